"""A person in motion: a timeline of expressions, rendered to video frames and written as a glTF animation.

A script names keys and their times, ``"neutral 0s; happy 1s; surprised 2.5s; neutral 4s"``: each key is
``neutral`` (the person's rest face), ``photo`` (the photo's own expression) or any text prompt (read by
the text model, as `sie3d generate` reads it), and its time in seconds. Between two keys the (53,) ICT
coefficients ease in and out (smoothstep: C1, never beyond the two keys' values) -- the same curve as
glTF's CUBICSPLINE interpolation with zero tangents, so the video (`frames`) and the animated GLB
(`animated_glb`) move alike. `--turntable` turns the camera once around the head over the timeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sie3d.errors import UsageError

if TYPE_CHECKING:
    from sie3d.avatar import Models, Person

MAX_SECONDS = 600.0  # longer timelines are almost certainly a typo (60s vs 6s)
SPECIAL_KEYS = ("neutral", "photo")
_ENTRY = re.compile(r"^(?P<label>.*?)\s+(?:at\s+)?(?P<time>[+-]?\d+(?:\.\d*)?|[+-]?\.\d+)\s*s$", re.IGNORECASE)
_HINT = 'write the script as "KEY TIMEs; KEY TIMEs; ...", e.g. "neutral 0s; happy 1s; a wide grin 2.5s; neutral 4s"'


@dataclass(frozen=True)
class Key:
    """One key of a timeline: what the face shows (`label`) at `time` seconds."""

    label: str
    time: float


@dataclass(frozen=True)
class Timeline:
    """Keys with their (K, 53) ICT coefficients, times increasing from 0."""

    keys: tuple[Key, ...]
    coefficients: np.ndarray

    @property
    def times(self) -> np.ndarray:
        return np.array([key.time for key in self.keys], np.float64)

    @property
    def duration(self) -> float:
        return self.keys[-1].time

    def at(self, seconds: np.ndarray | float) -> np.ndarray:
        """(T, 53) coefficients at the times `seconds` (T,): smoothstep between the keys around each time,
        held before the first key and after the last."""
        t = np.atleast_1d(np.asarray(seconds, np.float64))
        times = self.times
        if len(times) == 1:
            return np.repeat(self.coefficients[:1], len(t), axis=0)
        right = np.clip(np.searchsorted(times, t, side="right"), 1, len(times) - 1)
        left = right - 1
        u = np.clip((t - times[left]) / (times[right] - times[left]), 0.0, 1.0)
        ease = (u * u * (3 - 2 * u))[:, None]
        return (self.coefficients[left] * (1 - ease) + self.coefficients[right] * ease).astype(np.float32)

    def to_json(self) -> dict:
        from sie3d.avatar import expression_json

        return {"keys": [{"label": k.label, "time_s": k.time, "coefficients": expression_json(c)}
                         for k, c in zip(self.keys, self.coefficients, strict=True)],
                "interpolation": "smoothstep (glTF CUBICSPLINE, zero tangents)"}  # fmt: skip


def parse_script(script: str) -> list[Key]:
    """The keys of a script ``"KEY TIMEs; KEY TIMEs; ..."`` (entries separated by ``;`` or new lines; the
    time may be written ``1s``, ``1.5 s`` or ``at 2s``). Raises a `UsageError` naming the entry at fault:
    no time, a negative time, times not increasing, an unusable text, no key, longer than `MAX_SECONDS`."""
    from sie3d.semantics.text import check_text

    entries = [entry.strip() for entry in re.split(r"[;\n]", script)]
    keys: list[Key] = []
    for number, entry in enumerate(entries, 1):
        if not entry:
            continue
        where = f"--script entry {number} ({entry!r})"
        match = _ENTRY.match(entry)
        if not match or not match["label"].strip():
            raise UsageError(f"{where} is not 'KEY TIMEs'", _HINT)
        label, time = match["label"].strip(), float(match["time"])
        if time < 0:
            raise UsageError(f"{where}: the time is negative", "times start at 0s")
        if keys and time <= keys[-1].time:
            raise UsageError(f"{where}: {time:g}s is not after the previous key ({keys[-1].time:g}s)",
                             "list the keys in time order, each at its own time")  # fmt: skip
        if time > MAX_SECONDS:
            raise UsageError(f"{where}: {time:g}s is longer than {MAX_SECONDS:g}s", "use a shorter timeline")
        if label.lower() not in SPECIAL_KEYS:
            try:
                check_text(label)
            except UsageError as exc:
                raise UsageError(f"{where}: {exc.message}", exc.hint) from None
        keys.append(Key(label.lower() if label.lower() in SPECIAL_KEYS else label, time))
    if not keys:
        raise UsageError("--script has no keys", _HINT)
    return keys


def timeline(person: Person, models: Models, keys: list[Key], intensity: float = 1.0) -> Timeline:
    """The coefficients of every key for `person`: the rest face, the photo's expression, or what the text
    model reads in the key (all texts in one call, as `text_variants`), at `intensity` for texts."""
    from sie3d.avatar import text_variants

    texts = list(dict.fromkeys(k.label for k in keys if k.label not in SPECIAL_KEYS))
    read = {t: v.coefficients for t, v in zip(texts, text_variants(person, models, texts, intensity), strict=True)}
    read.update(neutral=person.rest_expression, photo=person.photo_expression)
    return Timeline(tuple(keys), np.stack([np.asarray(read[k.label], np.float32) for k in keys]))


def frame_times(timeline: Timeline, fps: float) -> np.ndarray:
    """(T,) the time of every frame, from 0 to the last key inclusive."""
    return np.arange(int(np.floor(timeline.duration * fps + 1e-6)) + 1) / fps


def frames(person: Person, models: Models, timeline: Timeline, fps: float = 25.0, size: int = 512,
           turntable: bool = False, light: str = "studio") -> Iterator[np.ndarray]:  # fmt: skip
    """(size, size, 3) uint8 frames of the person following `timeline`, framed as the preview's front view
    (turning once around the head over the timeline when `turntable`), lit as `light` says (`sie3d.lighting`)."""
    from sie3d.avatar import posed_verts, render_views
    from sie3d.previews import preview_cameras

    times = frame_times(timeline, fps)
    rest = posed_verts(person, models, person.rest_expression)  # the framing does not follow the face
    for t, coefficients in zip(times, timeline.at(times), strict=True):
        yaw = 360.0 * t / timeline.duration if turntable and timeline.duration > 0 else 0.0
        cams = preview_cameras(models.head, rest, (float(yaw),), size)
        yield render_views(person, models, coefficients, cams, light=light)[0]


def animated_glb(person: Person, models: Models, timeline: Timeline, name: str = "timeline") -> bytes:
    """The person's GLB (morph targets, default weights = the first key) with the timeline as a glTF
    animation of its morph weights (CUBICSPLINE, zero tangents: the video's curve)."""
    from sie3d.avatar import export_meshes
    from sie3d.export.glb import MorphAnimation, to_glb

    meshes = export_meshes(person, models, list(timeline.coefficients))
    weights = np.stack([mesh.morph_weights for mesh in meshes])
    return to_glb(meshes[0], animations=(MorphAnimation(name, timeline.times, weights),))
