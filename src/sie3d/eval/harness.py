"""`sie3d eval`: avatars of real people judged by held-out networks, next to what those judges score on
real photos.

For each photo x ablation (x intensity) x target (emotion or prompt) x view the harness renders the avatar
-- turntable views on a plain background at the requested yaws, and the `photo` view: the avatar
composited back into the photo with the photo's camera and lighting -- crops each image with the judges'
own landmark rules (from the exactly known projected landmarks) and records facex's distribution and
top-1, and FaceNet's cosine to the source photo (SFace's for information). Each photo is reconstructed
once, identical expressions are rendered once (the `rest` avatar is also every `prototype`'s neutral),
and the judges run in batches.

Outputs (`-o OUT/`): `rows.csv` and `rows.json` (one row per judged image), `references.json` (the judges
on labelled real photos, `sie3d.eval.references`), `summary.md` and `aggregate.json` (accuracy and identity
with bootstrap intervals), `accuracy.png`, `identity.png` -- all made from rows.json and references.json by
`sie3d.eval.report.write_report`, so they can be rebuilt from the raw files -- and `contact/` sheets
(photo, neutral, each target, with facex's top-1 under every cell).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from sie3d import __version__
from sie3d.errors import NoFaceError, UsageError
from sie3d.eval import ablations as ablation_registry
from sie3d.eval.references import References, compute_references, read_manifest
from sie3d.eval.report import PHOTO_VIEW, PROBABILITY_COLUMNS, write_report, write_rows
from sie3d.expressions import EMOTIONS
from sie3d.face.observation import N_LANDMARKS, FaceObservation
from sie3d.lighting import check_light
from sie3d.semantics.prompts import Target, read_prompts  # noqa: F401  (read_prompts: part of the eval API)

log = logging.getLogger(__name__)

PROMPTS = Path(__file__).with_name("prompts")  # the shipped prompt files
DEFAULT_VIEWS = ("0", "30", "-30", PHOTO_VIEW)
DEFAULT_ABLATIONS = ("photo", "rest", "prototype")
DEFAULT_INTENSITIES = (0.5, 1.0, 1.5)
RENDER_SIZE = 320  # px; the judges' crops are 200 (facex) and 160 (FaceNet) px
TEXTURE_SIZE = 512  # texels per tile: enough for ~200 px judge crops, 4x cheaper than the default 1024
FACE_FILL = 0.85  # the FaceNet crop box (the larger one) spans this fraction of the image height
FOCAL_FACTOR = 2.0  # focal = 2 x image size (~28° field of view): portrait distance, little perspective
THUMB = 128  # px per contact-sheet cell
SHEET_ROWS = 8  # photos per contact-sheet page
# MediaPipe ids: eye corners, mouth corners (as in judges.crops) and the iris centres 468/473.
_EYES, _MOUTH = ((33, 133), (263, 362)), (61, 291)


# -- configuration -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    name: str  # "0", "30", "-30" (yaw in degrees) or "photo"
    yaw: float | None  # None for the in-photo composite

    @property
    def in_photo(self) -> bool:
        return self.yaw is None


@dataclass(frozen=True)
class EvalConfig:
    photos: tuple[Path, ...]
    targets: tuple[Target, ...]
    ablations: tuple[str, ...] = DEFAULT_ABLATIONS
    views: tuple[View, ...] = ()
    intensities: tuple[float, ...] = DEFAULT_INTENSITIES
    size: int = RENDER_SIZE
    texture_size: int = TEXTURE_SIZE
    references: Path | None = None  # manifest.csv of the labelled real photos; None: no references
    seed: int = 0
    command: str = ""
    redact_photos: bool = False  # contact sheets without the source photos (for sheets that get published)
    hair: bool = False  # every series with the hair volume (default: the bare head, as the tables were measured)
    light: str = "studio"  # how the turntable views are lit (`sie3d.lighting`); the photo view as the photo

    def __post_init__(self) -> None:
        check_light(self.light)
        if not self.photos:
            raise UsageError("no photos to evaluate", "pass --photos with a folder or a manifest.csv")
        if not self.targets:
            raise UsageError("no prompts to evaluate", "pass --prototypes or a --prompts file with prompts")
        if not self.views:
            object.__setattr__(self, "views", parse_views(",".join(DEFAULT_VIEWS)))
        for name in self.ablations:
            ablation_registry.get(name)
        if not 128 <= self.size <= 1024:
            raise UsageError(f"render size {self.size} px is outside [128, 1024]", "use --size 320 (the default)")


def prototype_targets() -> tuple[Target, ...]:
    """The seven emotions, each its own prompt and expectation."""
    return tuple(Target(e, e, e) for e in EMOTIONS)


def parse_views(spec: str) -> tuple[View, ...]:
    """'0,30,-30,photo' -> views (yaw in degrees, or the in-photo composite)."""
    views = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item == PHOTO_VIEW:
            views.append(View(PHOTO_VIEW, None))
            continue
        try:
            yaw = float(item)
        except ValueError:
            raise UsageError(f"--views: {item!r} is neither a yaw angle nor 'photo'",
                             "use e.g. --views 0,30,-30,photo") from None  # fmt: skip
        if not -90.0 <= yaw <= 90.0:
            raise UsageError(f"--views: yaw {yaw:g} is outside [-90, 90] degrees", "use frontal-ish yaws")
        views.append(View(f"{yaw:g}", yaw))
    if not views:
        raise UsageError("--views is empty", "use e.g. --views 0,30,-30,photo")
    return tuple(dict.fromkeys(views))


def parse_intensities(spec: str) -> tuple[float, ...]:
    try:
        values = tuple(dict.fromkeys(float(s) for s in spec.split(",") if s.strip()))
    except ValueError:
        raise UsageError(f"--intensities {spec!r} is not a list of numbers", "use e.g. 0.5,1,1.5") from None
    if not values or any(not 0.0 <= v <= 3.0 for v in values):
        raise UsageError(f"--intensities {spec!r}: give numbers in [0, 3]", "use e.g. 0.5,1,1.5")
    return values


def resolve_photos(spec: str | None) -> tuple[tuple[Path, ...], Path | None]:
    """(photos, manifest for the references) from --photos: a folder, a manifest.csv, or None for the
    London Set's neutral photos of the shared faces folder."""
    from sie3d.photo import PHOTO_SUFFIXES

    if spec is None:
        from sie3d.photo import shared_faces_dir

        folder = shared_faces_dir()
        if folder is None:
            raise UsageError("no default photos: the shared faces folder was not found",
                             "pass --photos DIR or --photos manifest.csv (or set SIE3D_FACES)")  # fmt: skip
        manifest = folder / "manifest.csv"
        photos = [p.path for p in read_manifest(manifest) if p.name.startswith("london_") and p.label == "neutral"]
        return tuple(photos), manifest
    path = Path(spec)
    if path.is_dir():
        photos = sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not photos:
            raise UsageError(f"no photos in {path}", "pass a folder of JPEG/PNG photos")
        manifest = path / "manifest.csv"
        return tuple(photos), manifest if manifest.is_file() else None
    if path.suffix.lower() == ".csv":
        photos = [p.path for p in read_manifest(path)]
        missing = [p.name for p in photos if not p.is_file()]
        if missing:
            raise UsageError(f"{path} lists photos that do not exist: {', '.join(missing[:5])}",
                             "fix the manifest or the folder it sits in")  # fmt: skip
        return tuple(photos), path
    raise UsageError(f"--photos {spec}: not a folder or a .csv manifest", "pass a folder or a manifest.csv")


# -- rendering and judging ---------------------------------------------------------------------------


def landmark_observation(landmarks_px: np.ndarray, image_size: tuple[int, int]) -> FaceObservation:
    """A `FaceObservation` that carries only landmarks, for crops of renders whose landmarks are known.

    `landmarks_px` (468 or 478, 2 or 3) pixels; the 10 iris points MediaPipe adds (468-477) are filled in
    as a small ring around each eye's corner midpoint, where crops that read them expect the iris."""
    lm = np.asarray(landmarks_px, np.float32)
    if lm.ndim != 2 or lm.shape[0] not in (468, N_LANDMARKS) or lm.shape[1] not in (2, 3):
        raise ValueError(f"expected (468 or 478, 2 or 3) landmarks, got {lm.shape}")
    full = np.zeros((N_LANDMARKS, 3), np.float32)
    full[: lm.shape[0], : lm.shape[1]] = lm
    if lm.shape[0] == 468:
        for centre_id, corners in ((468, _EYES[0]), (473, _EYES[1])):
            a, b = full[list(corners), :2]
            radius = 0.2 * float(np.linalg.norm(b - a))  # iris diameter ~0.4 of the eye width
            centre = (a + b) / 2
            full[centre_id, :2] = centre
            for k, (dx, dy) in enumerate(((1, 0), (0, -1), (-1, 0), (0, 1)), 1):
                full[centre_id + k, :2] = centre + radius * np.array([dx, dy], np.float32)
    xy = full[:, :2]
    box = (float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max()))
    return FaceObservation(full, np.zeros(52, np.float32), np.eye(4, dtype=np.float32), box, math.nan,
                           (int(image_size[0]), int(image_size[1])))  # fmt: skip


@dataclass
class Judges:
    """The held-out judges plus SFace (for information), loaded once."""

    facex: object
    facenet: object
    sface: object  # avatar.Models.embedder

    @staticmethod
    def load(models) -> Judges:
        from sie3d.eval.judges.expression import FacexJudge
        from sie3d.eval.judges.identity import FacenetJudge

        return Judges(FacexJudge(num_threads=max(1, torch.get_num_threads())), FacenetJudge(), models.embedder)


@dataclass
class JudgedImage:
    """One rendered (or real) image and its crops; filled with the judges' outputs after the batch runs."""

    key: str  # expression hash + view: identical images share it
    view: str
    facex_crop: np.ndarray | None  # (200, 200, 3) float32 in [0, 1]; None once judged
    facenet_crop: np.ndarray | None  # (160, 160, 3) uint8
    sface_crop: np.ndarray | None  # (112, 112, 3) uint8
    thumbnail: np.ndarray  # (THUMB, THUMB, 3) uint8: the FaceNet box, for contact sheets
    seconds_render: float
    probabilities: np.ndarray | None = None  # (7,) `EMOTIONS` order
    facenet: np.ndarray | None = None  # (512,)
    sface: np.ndarray | None = None  # (128,)
    seconds_judge: float = 0.0


def _judge_crops(judges: Judges, rgb: np.ndarray, landmarks_px: np.ndarray,
                 obs: FaceObservation | None = None) -> tuple[np.ndarray, ...]:
    """facex, FaceNet, SFace crops and a thumbnail of the face `landmarks_px` (468|478, 2|3) in `rgb`
    (`obs`, a photo's own observation, when there is one)."""
    from sie3d.eval.judges.crops import crop_face

    obs = obs or landmark_observation(landmarks_px[:, :2], (rgb.shape[1], rgb.shape[0]))
    facenet_crop = judges.facenet.crop(rgb, landmarks_px)
    thumb = crop_face(rgb, landmarks_px, judges.facenet.rule, THUMB)
    return judges.facex.crop(rgb, landmarks_px), facenet_crop, judges.sface.crop(rgb, obs), thumb


def _texture_key(texture) -> str:
    """A short name of a `TextureConfig` for image keys."""
    return ",".join(f"{k}={v}" for k, v in dataclasses.asdict(texture).items())


def _expression_key(expression: np.ndarray) -> str:
    return hashlib.sha1(np.round(np.asarray(expression, np.float64), 5).astype(np.float32).tobytes()).hexdigest()[:12]


def _turntable_cameras(landmarks_head: np.ndarray, yaws: Sequence[float], size: int):
    """Orbit cameras around the centre of the FaceNet crop box, at the distance where that box spans
    FACE_FILL of the image: every person's face is framed alike, whatever their head size."""
    from sie3d.eval.judges.crops import load_rule
    from sie3d.render import orbit_cameras

    rule = load_rule("facenet")
    eye = np.mean([landmarks_head[list(c)].mean(0) for c in _EYES], axis=0)
    mouth = landmarks_head[list(_MOUTH)].mean(0)
    d = float(np.linalg.norm(mouth - eye))
    focal = FOCAL_FACTOR * size
    distance = focal * rule.height * d / (FACE_FILL * size)
    target = torch.from_numpy((eye + rule.down * (mouth - eye)).astype(np.float32))
    return orbit_cameras(list(yaws), distance=distance, target=target, focal_px=focal, width=size, height=size)


def _photo_window(person, size: int):
    """The photo cut to a square around the face at most `size` px wide, and the fit's camera moved into
    it: the in-photo composite costs a 320 px render instead of a full-photo one."""
    from sie3d.avatar import PhotoWindow
    from sie3d.eval.judges.crops import crop_box, judge_crop_box, load_rule

    x0, y0, x1, y1 = judge_crop_box(person.observation, load_rule("facenet"))
    side = (y1 - y0) / FACE_FILL
    out = max(32, round(min(side, size)))
    left, top = (x0 + x1) / 2 - side / 2, (y0 + y1) / 2 - side / 2
    rgb = crop_box(person.photo.rgb, (left, top, left + side, top + side), out)
    return PhotoWindow(rgb, person.fit.crop(left, top, (out, out), out / side))


def _render_expression(person, models, expression: np.ndarray, views: Sequence[View], size: int,
                       window, wrinkles: bool = False, light: str = "studio",
                       ) -> list[tuple[View, np.ndarray, np.ndarray, float]]:  # fmt: skip
    """[(view, rgb (H, W, 3) uint8, landmarks (468, 2) px, seconds)] of one expression in every view (with
    its wrinkles when `wrinkles`; the turntable views lit as `light` says)."""
    from sie3d.avatar import composite, render_views
    from sie3d.render import project

    out = []
    landmarks_head = models.fitter.landmarks_3d(person.fit, expression)  # (468, 3) head space, cm
    turntable = [v for v in views if not v.in_photo]
    if turntable:
        start = time.perf_counter()
        cams = _turntable_cameras(models.fitter.landmarks_3d(person.fit, person.rest_expression),
                                  [v.yaw for v in turntable], size)
        rendered = render_views(person, models, expression, cams, wrinkles=wrinkles, light=light)
        pixels, _ = project(torch.from_numpy(landmarks_head), cams)  # (B, 468, 2)
        seconds = (time.perf_counter() - start) / len(turntable)
        out += [(v, rendered[i], pixels[i].numpy(), seconds) for i, v in enumerate(turntable)]
    if any(v.in_photo for v in views):
        start = time.perf_counter()
        image = composite(person, models, expression, window, wrinkles=wrinkles)
        out.append((View(PHOTO_VIEW, None), image, window.fit.project(landmarks_head), time.perf_counter() - start))
    return out


def _run_judges(judges: Judges, images: list[JudgedImage]) -> None:
    """Fill probabilities and embeddings of `images` in three batched calls; time shared equally."""
    from sie3d.eval.references import facex_emotions

    if not images:
        return
    start = time.perf_counter()
    raw = judges.facex.predict_batch(np.stack([i.facex_crop for i in images]))
    order = [facex_emotions().index(e) for e in EMOTIONS]  # facex's class order -> EMOTIONS order
    facenet = judges.facenet.predict_batch(np.stack([i.facenet_crop for i in images]))
    # SFace in chunks: its convolutions run ~1.7x slower per image in batches of 64 than of 16 on this CPU.
    sface = np.concatenate([judges.sface.embed_crops(np.stack([i.sface_crop for i in images[k : k + 16]]))
                            for k in range(0, len(images), 16)])  # fmt: skip
    each = (time.perf_counter() - start) / len(images)
    for image, probs, fn, sf in zip(images, raw[:, order], facenet, sface, strict=True):
        image.probabilities, image.facenet, image.sface, image.seconds_judge = probs, fn, sf, each
        image.facex_crop = image.facenet_crop = image.sface_crop = None  # judged: only the thumbnail is kept


@dataclass
class PhotoResult:
    """Everything judged for one photo: its own image, the unique renders and the rows that use them."""

    name: str
    person: str
    source: JudgedImage
    images: dict[str, JudgedImage]  # key -> image
    rows: list[dict]
    info: dict = field(default_factory=dict)


def evaluate_photo(path: Path, person: str, config: EvalConfig, models, judges: Judges) -> PhotoResult:
    """Reconstruct one photo, render every distinct expression in every view, judge all images in batches."""
    from sie3d.avatar import ReconstructConfig, reconstruct, retextured, with_hair
    from sie3d.hair.config import HairConfig
    from sie3d.photo import load_photo

    start = time.perf_counter()
    photo = load_photo(path)
    # The series render the bare head, as every published table was measured, unless `config.hair`; the `hair`
    # ablation adds the hair to the rest.
    avatar = reconstruct(photo, models, ReconstructConfig(texture_size=config.texture_size,
                                                          hair=HairConfig(enabled=config.hair)))  # fmt: skip
    seconds_reconstruct = time.perf_counter() - start
    obs = avatar.observation
    source = JudgedImage("source", "source", *_judge_crops(judges, photo.rgb, obs.landmarks_px, obs), 0.0)

    # Plan: which expression each (ablation, intensity, target) asks for, under which textures (appearance
    # ablations retexture the same fit); distinct (textures, expression) pairs are rendered once.
    plan, expressions = [], {}
    people = {"": avatar}
    rest_key = _expression_key(avatar.rest_expression)
    expressions[rest_key] = (avatar, avatar.rest_expression, False)
    for name in config.ablations:
        ablation = ablation_registry.get(name)
        look = "" if ablation.texture is None else "|" + _texture_key(ablation.texture)
        look += "|hair" if ablation.hair else ""
        if look not in people:
            posed = avatar if ablation.texture is None else retextured(avatar, models, ablation.texture)
            people[look] = with_hair(posed, models) if ablation.hair else posed
        # every identity delta is taken against the rest avatar with the same textures
        expressions.setdefault(rest_key + look, (people[look], avatar.rest_expression, False))
        for intensity in config.intensities if ablation.uses_intensity else (None,):
            for target in config.targets:
                coefficients = ablation.expression(avatar, models, target.emotion, 1.0 if intensity is None
                                                   else intensity, prompt=target.prompt)  # fmt: skip
                key = _expression_key(coefficients) + look + ("+wrinkles" if ablation.wrinkles else "")
                expressions.setdefault(key, (people[look], coefficients, ablation.wrinkles))
                plan.append((ablation, intensity, target, key, rest_key + look))
    window = _photo_window(avatar, config.size) if any(v.in_photo for v in config.views) else None
    images: dict[str, JudgedImage] = {}
    for key, (posed, expression, wrinkles) in expressions.items():
        rendered = _render_expression(posed, models, expression, config.views, config.size, window, wrinkles,
                                      config.light)  # fmt: skip
        for view, rgb, landmarks, seconds in rendered:
            image_key = f"{key}@{view.name}"
            images[image_key] = JudgedImage(image_key, view.name, *_judge_crops(judges, rgb, landmarks), seconds)
    _run_judges(judges, [source, *images.values()])

    rows = []
    for ablation, intensity, target, key, rest_of in plan:
        for view in config.views:
            image = images[f"{key}@{view.name}"]
            rest = images[f"{rest_of}@{view.name}"]
            p = image.probabilities
            top1 = EMOTIONS[int(p.argmax())]
            identity = float(image.facenet @ source.facenet)
            rows.append({
                "photo": path.name, "person": person, "ablation": ablation.name, "intensity": intensity,
                "series": series_name(ablation.name, intensity), "prompt": target.prompt, "emotion": target.emotion,
                "expected": target.expected, "view": view.name, "facex_top1": top1,
                "facex_p_top1": round(float(p.max()), 5), "facex_p_expected": round(float(p[EMOTIONS.index(
                    target.expected)]), 5), "facex_correct": top1 == target.expected,
                **{c: round(float(v), 5) for c, v in zip(PROBABILITY_COLUMNS, p, strict=True)},
                "identity_facenet": round(identity, 5),
                "identity_facenet_delta": round(identity - float(rest.facenet @ source.facenet), 5),
                "identity_facenet_other_max": None, "identity_rank1": None,  # filled once every photo is done
                "identity_sface": round(float(image.sface @ source.sface), 5),
                "image": image.key, "seconds_render": round(image.seconds_render, 4),
                "seconds_judge": round(image.seconds_judge, 4),
            })  # fmt: skip
    source_top1 = EMOTIONS[int(source.probabilities.argmax())]
    info = {"photo": path.name, "person": person, "seconds_reconstruct": round(seconds_reconstruct, 3),
            "fit_error_iod": round(float(avatar.fit.landmark_error_iod), 5),
            "facex_top1": source_top1, "facex_p_top1": round(float(source.probabilities.max()), 5),
            "images_rendered": len(images), "warnings": list(avatar.warnings),
            "seconds_render": round(sum(i.seconds_render for i in images.values()), 3),
            "seconds_judge": round(sum(i.seconds_judge for i in [source, *images.values()]), 3)}  # fmt: skip
    return PhotoResult(path.name, person, source, images, rows, info)


def series_name(ablation: str, intensity: float | None) -> str:
    """How an ablation at an intensity is named in tables and plots: 'rest', 'prototype 1'."""
    return ablation if intensity is None else f"{ablation} {intensity:g}"


def _cross_identity(results: list[PhotoResult]) -> None:
    """Fill `identity_facenet_other_max` (the closest other evaluated person's photo) and `identity_rank1`
    (the own photo is the closest of all evaluated photos): is the render still told apart from others?"""
    people = [r.person for r in results]
    if len(set(people)) < 2:
        return
    sources = np.stack([r.source.facenet for r in results])  # (P, 512)
    for i, result in enumerate(results):
        others = np.array([p != result.person for p in people])
        for row in result.rows:
            cosines = sources @ result.images[row["image"]].facenet
            row["identity_facenet_other_max"] = round(float(cosines[others].max()), 5)
            row["identity_rank1"] = bool(cosines[i] >= cosines[others].max())


# -- the run -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalOutput:
    rows: list[dict]
    references: References | None
    files: list[Path]
    seconds: float
    skipped: list[str]


def run_eval(config: EvalConfig, out: Path, progress: bool = True) -> EvalOutput:
    """Evaluate every photo of `config` and write rows, references, summary, plots and contact sheets to `out`."""
    from sie3d.avatar import Models

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    people = _people_of(config)
    models = Models.load()
    try:
        judges = Judges.load(models)
        references = compute_references(config.references, models, judges.facex, judges.facenet, progress) \
            if config.references is not None else None  # fmt: skip
        results, skipped = [], []
        bar = tqdm(config.photos, desc="eval: photos", unit="photo", disable=not progress)
        for path in bar:
            try:
                results.append(evaluate_photo(path, people.get(path.name, path.stem), config, models, judges))
            except NoFaceError as exc:
                log.warning("%s: %s; skipped", path.name, exc.message)
                skipped.append(path.name)
                continue
            bar.set_postfix_str(f"{results[-1].info['images_rendered']} images")
    finally:
        models.close()
    if not results:
        raise NoFaceError("no face found in any of the photos", "check the --photos folder")
    _cross_identity(results)
    rows = [row for r in results for row in r.rows]
    seconds = time.perf_counter() - start
    meta = {"command": config.command, "sie3d_version": __version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "wall_seconds": round(seconds, 1), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "photos": len(config.photos),
            "evaluated": len(results), "skipped": skipped, "ablations": list(config.ablations),
            "intensities": list(config.intensities), "views": [v.name for v in config.views],
            "targets": [dataclasses.asdict(t) for t in config.targets], "render_size": config.size,
            "texture_size": config.texture_size, "seed": config.seed,
            "images_judged": sum(len(r.images) + 1 for r in results)}  # fmt: skip
    files = write_rows(out, rows, [r.info for r in results], meta)
    if references is not None:
        (out / "references.json").write_text(json.dumps(references.to_json(config.seed), indent=1))
        files.append(out / "references.json")
    files += write_report(out)
    files += write_contact_sheets(out / "contact", results, config)
    return EvalOutput(rows, references, files, seconds, skipped)


def _people_of(config: EvalConfig) -> dict[str, str]:
    """photo file name -> person id, from the manifest beside the photos when there is one."""
    people = {}
    for manifest in {p.parent / "manifest.csv" for p in config.photos}:
        if manifest.is_file():
            people.update({p.name: p.person for p in read_manifest(manifest) if p.person})
    return people


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def contact_sheet(cells: list[list[tuple[np.ndarray, str, bool | None]]], header: list[str], title: str) -> Image.Image:
    """A grid of thumbnails, each with a caption (green when it reads as expected, red when not).

    `cells[row][column]` = (THUMB x THUMB x 3 uint8 image, caption of up to two lines, correct or None)."""
    caption_h, header_h, title_h, pad = 30, 18, 22, 4
    cols = len(header)
    width = cols * (THUMB + pad) + pad
    height = title_h + header_h + len(cells) * (THUMB + caption_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    small, big = _font(11), _font(13)
    draw.text((pad, 4), title, fill=(0, 0, 0), font=big)
    for c, name in enumerate(header):
        draw.text((pad + c * (THUMB + pad) + 2, title_h), name, fill=(60, 60, 60), font=small)
    for r, row in enumerate(cells):
        top = title_h + header_h + r * (THUMB + caption_h + pad)
        for c, (image, caption, correct) in enumerate(row):
            left = pad + c * (THUMB + pad)
            sheet.paste(Image.fromarray(image), (left, top))
            colour = (0, 0, 0) if correct is None else (0, 120, 0) if correct else (180, 0, 0)
            for k, text in enumerate(caption.split("\n")[:2]):  # the verdict colours the first line only
                draw.text((left + 2, top + THUMB + 2 + 13 * k), text, fill=colour if k == 0 else (70, 70, 70),
                          font=small)  # fmt: skip
    return sheet


_REDACTED = np.full((THUMB, THUMB, 3), 225, np.uint8)  # the source photo's cell when photos are redacted


def write_contact_sheets(folder: Path, results: list[PhotoResult], config: EvalConfig) -> list[Path]:
    """One sheet per emotion-dependent series and view, SHEET_ROWS photos per page: the photo (with facex's
    reading of it), then each target's render with facex's top-1 and probability under it."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    targets = sorted(config.targets, key=lambda t: t.emotion != "neutral")  # neutral first, as the reference
    header = ["photo", *[t.prompt if t.prompt == t.expected else f"{t.prompt} ({t.expected})" for t in targets]]
    for name in config.ablations:
        ablation = ablation_registry.get(name)
        if not ablation.uses_emotion:
            continue  # the same avatar in every column: its renders are the 'neutral'/'photo' columns elsewhere
        for intensity in config.intensities if ablation.uses_intensity else (None,):
            series = series_name(name, intensity)
            for view in config.views:
                pages = [results[i : i + SHEET_ROWS] for i in range(0, len(results), SHEET_ROWS)]
                for page, chunk in enumerate(pages, 1):
                    cells = []
                    for result in chunk:
                        info = result.info
                        photo = _REDACTED if config.redact_photos else result.source.thumbnail
                        row = [(photo, f"{result.person}\n{info['facex_top1']} "
                                f"{info['facex_p_top1']:.2f}", None)]  # fmt: skip
                        lookup = {(r["prompt"], r["expected"]): r for r in result.rows
                                  if r["series"] == series and r["view"] == view.name}  # fmt: skip
                        for t in targets:
                            r = lookup[(t.prompt, t.expected)]
                            row.append((result.images[r["image"]].thumbnail,
                                        f"{r['facex_top1']} {r['facex_p_top1']:.2f}\nid {r['identity_facenet']:.2f}",
                                        r["facex_correct"]))  # fmt: skip
                        cells.append(row)
                    view_text = "in-photo composite" if view.in_photo else f"yaw {view.name}°"
                    title = (f"{series}, {view_text}: facex top-1 + probability (green = expected), FaceNet "
                             f"cosine to the photo · page {page}/{len(pages)}")  # fmt: skip
                    path = folder / f"{series.replace(' ', '_')}_view_{view.name}_p{page}.png"
                    contact_sheet(cells, header, title).save(path)
                    files.append(path)
    return files
