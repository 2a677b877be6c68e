"""What the judges score on real photos: the ceilings the avatar renders are read against.

- expression: each expression judge's top-1 accuracy and confusion matrix on the photos whose manifest
  carries an expression label (the London Set's neutral and smiling photos, the posed `max_*` and other
  labelled photos). facex is the held-out judge; its accuracy on real faces bounds what a render can
  reach.
- identity: cosine distributions of each identity net between two photos of the same person (the
  London neutral vs smiling pairs) and between different people (one photo per person, all pairs), and
  the threshold that lets 1% of the different-people pairs through. FaceNet is the held-out judge; SFace
  (the identity net the generation side may optimise) is listed for information only.

The harness computes these with every report, on the same crops (landmark rules of `judges.crops`) and
code path as the renders, and stores them next to the render results (`references.json`).
"""

from __future__ import annotations

import csv
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sie3d.errors import NoFaceError, UsageError
from sie3d.eval.stats import Interval, bootstrap_mean
from sie3d.expressions import EMOTIONS, canonical_emotion

log = logging.getLogger(__name__)

FAR = 0.01  # false-accept rate at which the identity threshold is read


def facex_emotions() -> tuple[str, ...]:
    """facex's class order in `EMOTIONS` names (its 'surprised' is 'surprise')."""
    from sie3d.eval.judges.expression import CLASSES

    return tuple(canonical_emotion(c) for c in CLASSES)


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    person: str
    label: str | None  # an `EMOTIONS` name, or None when the manifest gives none

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def group(self) -> str:
        """Where the photo's figure is reported: the London Set per label, everything else pooled."""
        return f"london {self.label}" if self.name.startswith("london_") else "other labelled"


def read_manifest(manifest: Path) -> list[LabelledPhoto]:
    """Every photo of a manifest.csv (columns filename, person_id, expression), in file order."""
    if not manifest.is_file():
        raise UsageError(f"manifest {manifest} not found", "pass a manifest.csv with filename,person_id,expression")
    with open(manifest, newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or "filename" not in rows[0]:
        raise UsageError(f"{manifest} has no 'filename' column", "use the manifest.csv format of the shared faces")
    photos = []
    for row in rows:
        label = (row.get("expression") or "").strip()
        photos.append(LabelledPhoto(manifest.parent / row["filename"], (row.get("person_id") or "").strip(),
                                    canonical_emotion(label) if label else None))  # fmt: skip
        if label and photos[-1].label is None:
            log.warning("%s: expression label %r is not one of the seven emotions; ignored", row["filename"], label)
    return photos


# -- results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpressionReference:
    """One expression judge on labelled real photos: per photo the label, the judge's top-1 and probabilities."""

    judge: str
    classes: tuple[str, ...]  # the judge's output order, `EMOTIONS` names
    photos: list[dict] = field(default_factory=list)  # {photo, person, group, label, top1, probabilities}

    def groups(self) -> list[str]:
        return list(dict.fromkeys(p["group"] for p in self.photos))

    def _select(self, group: str | None) -> list[dict]:
        return [p for p in self.photos if group is None or p["group"] == group]

    def accuracy(self, group: str | None = None, seed: int = 0) -> Interval:
        chosen = self._select(group)
        hits = [float(p["top1"] == p["label"]) for p in chosen]
        return bootstrap_mean(hits, [p["person"] or p["photo"] for p in chosen], seed=seed)

    def confusion(self, group: str | None = None) -> np.ndarray:
        """(7, 7) int counts in `EMOTIONS` order: rows the label, columns the judge's top-1."""
        matrix = np.zeros((len(EMOTIONS), len(EMOTIONS)), np.int64)
        for p in self._select(group):
            matrix[EMOTIONS.index(p["label"]), EMOTIONS.index(p["top1"])] += 1
        return matrix

    def to_json(self, seed: int = 0) -> dict:
        return {
            "judge": self.judge, "classes": list(self.classes),
            "accuracy": {**{g: self.accuracy(g, seed).to_json() for g in self.groups()},
                         "all": self.accuracy(None, seed).to_json()},
            "confusion": {"labels": list(EMOTIONS), "rows": "label", "columns": "top-1",
                          "all": self.confusion().tolist(), **{g: self.confusion(g).tolist() for g in self.groups()}},
            "photos": self.photos,
        }  # fmt: skip

    @staticmethod
    def from_json(data: dict) -> ExpressionReference:
        return ExpressionReference(data["judge"], tuple(data["classes"]), list(data["photos"]))


@dataclass(frozen=True)
class IdentityReference:
    """One identity net on real photos: cosines of same-person pairs and of different-people pairs."""

    judge: str
    held_out: bool
    same: np.ndarray  # (P,) cosine, two photos of one person
    different: np.ndarray  # (Q,) cosine, photos of two people
    same_pairs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def threshold(self) -> float:
        """Cosine above which only `FAR` of the different-people pairs lie (NaN without pairs)."""
        return float(np.quantile(self.different, 1.0 - FAR)) if len(self.different) else float("nan")

    def to_json(self) -> dict:
        return {
            "judge": self.judge, "held_out": self.held_out, "far": FAR, "threshold": round(self.threshold, 4),
            "same": {"n": int(len(self.same)), **_summary(self.same),
                     "above_threshold": float(np.mean(self.same > self.threshold)) if len(self.same) else None},
            "different": {"n": int(len(self.different)), **_summary(self.different)},
            "same_cosines": np.round(self.same, 5).tolist(), "same_pairs": [list(p) for p in self.same_pairs],
            "different_cosines": np.round(self.different, 5).tolist(),
        }  # fmt: skip

    @staticmethod
    def from_json(data: dict) -> IdentityReference:
        return IdentityReference(data["judge"], data["held_out"], np.asarray(data["same_cosines"], np.float64),
                                 np.asarray(data["different_cosines"], np.float64),
                                 [tuple(p) for p in data.get("same_pairs", [])])  # fmt: skip


def _summary(values: np.ndarray) -> dict:
    if not len(values):
        return {"mean": None, "min": None, "max": None}
    return {"mean": round(float(values.mean()), 4), "min": round(float(values.min()), 4),
            "max": round(float(values.max()), 4)}  # fmt: skip


@dataclass(frozen=True)
class References:
    manifest: str
    expression: list[ExpressionReference]
    identity: list[IdentityReference]
    skipped: list[str] = field(default_factory=list)  # photos without a detectable face

    def to_json(self, seed: int = 0) -> dict:
        return {"manifest": self.manifest, "expression": [e.to_json(seed) for e in self.expression],
                "identity": [i.to_json() for i in self.identity], "skipped": self.skipped}  # fmt: skip

    @staticmethod
    def from_json(data: dict) -> References:
        return References(data["manifest"], [ExpressionReference.from_json(e) for e in data["expression"]],
                          [IdentityReference.from_json(i) for i in data["identity"]], data.get("skipped", []))

    def identity_judge(self, name: str) -> IdentityReference | None:
        return next((i for i in self.identity if i.judge == name), None)

    def expression_judge(self, name: str) -> ExpressionReference | None:
        return next((e for e in self.expression if e.judge == name), None)

    def markdown(self, seed: int = 0) -> str:
        lines = []
        for ref in self.expression:
            groups = ref.groups()
            lines += [f"**{ref.judge}** top-1 accuracy on labelled real photos (bootstrap 95% interval over people):",
                      "", "| " + " | ".join([*groups, "all"]) + " |", "|" + "---|" * (len(groups) + 1),
                      "| " + " | ".join(ref.accuracy(g, seed).format() for g in [*groups, None]) + " |", ""]
            lines += [f"{ref.judge} confusion on all {len(ref.photos)} labelled photos (rows: label, columns: top-1):",
                      "", confusion_markdown(ref.confusion()), ""]
        lines += ["Identity on real photos (cosine of embeddings; same person: neutral vs smiling photo; different "
                  f"people: one photo each, all pairs; threshold: {100 * FAR:.0f}% false accepts):", "",
                  "| judge | same person: mean (min) | different people: mean, max | threshold | same pairs above |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for ref in self.identity:
            role = "held-out" if ref.held_out else "information only: the generation side may optimise it"
            same = f"{ref.same.mean():.3f} ({ref.same.min():.3f}), n={len(ref.same)}" if len(ref.same) else "–"
            diff = (f"{ref.different.mean():.3f}, {ref.different.max():.3f}, n={len(ref.different)}"
                    if len(ref.different) else "–")  # fmt: skip
            above = f"{int((ref.same > ref.threshold).sum())}/{len(ref.same)}" if len(ref.same) else "–"
            lines.append(f"| {ref.judge} ({role}) | {same} | {diff} | {ref.threshold:.3f} | {above} |")
        if self.skipped:
            lines += ["", f"No face found in: {', '.join(self.skipped)}."]
        return "\n".join(lines)


def confusion_markdown(matrix: np.ndarray, labels: tuple[str, ...] = EMOTIONS) -> str:
    """A (K, K) count matrix as a Markdown table, rows labelled 'label \\ top-1'."""
    head = "| label \\ top-1 | " + " | ".join(labels) + " | n |"
    rows = [head, "|---|" + "---:|" * (len(labels) + 1)]
    for label, row in zip(labels, matrix, strict=True):
        if row.sum():
            rows.append(f"| {label} | " + " | ".join(str(int(v)) if v else "·" for v in row) + f" | {int(row.sum())} |")
    return "\n".join(rows)


# -- computation -------------------------------------------------------------------------------------


def compute_references(manifest: Path, models, facex, facenet, progress: bool = True) -> References:
    """Observe every labelled or London photo of `manifest` once and score it with the judges.

    `models` is an `avatar.Models` (MediaPipe observer and SFace embedder), `facex` a `FacexJudge`,
    `facenet` a `FacenetJudge`."""
    from sie3d.face import observe_photo
    from sie3d.photo import load_photo

    photos = [p for p in read_manifest(manifest) if p.label is not None or p.name.startswith("london_")]
    observed, skipped = [], []
    for photo in tqdm(photos, desc="references: real photos", unit="photo", disable=not progress):
        if not photo.path.is_file():
            log.warning("reference photo %s is missing; skipped", photo.path)
            skipped.append(photo.name)
            continue
        image = load_photo(photo.path)
        try:
            obs, _ = observe_photo(image, models.observer, models.embedder)
        except NoFaceError:
            skipped.append(photo.name)
            continue
        observed.append((photo, image.rgb, obs))
    classes = facex_emotions()
    labelled = [(p, rgb, obs) for p, rgb, obs in observed if p.label is not None]
    probabilities = facex.predict_batch(np.stack([facex.crop(rgb, obs) for _, rgb, obs in labelled])) if labelled \
        else np.zeros((0, len(classes)))  # fmt: skip
    expression = ExpressionReference("facex", classes, [
        {"photo": p.name, "person": p.person, "group": p.group, "label": p.label,
         "top1": classes[int(probs.argmax())], "probabilities": [round(float(v), 5) for v in probs]}
        for (p, _, _), probs in zip(labelled, probabilities, strict=True)])  # fmt: skip
    facenet_embeddings = facenet.predict_batch(np.stack([facenet.crop(rgb, obs) for _, rgb, obs in observed])) \
        if observed else np.zeros((0, 512), np.float32)  # fmt: skip
    sface_embeddings = np.stack([obs.identity for _, _, obs in observed]) if observed else np.zeros((0, 128))
    people = [p for p, _, _ in observed]
    identity = [identity_reference("facenet", True, people, facenet_embeddings),
                identity_reference("sface", False, people, sface_embeddings)]  # fmt: skip
    refs = References(str(manifest), [expression], identity, skipped)
    for ref in identity:
        log.info("%s: same %s, different %s, threshold %.3f", ref.judge, _summary(ref.same), _summary(ref.different),
                 ref.threshold)  # fmt: skip
    return refs


def identity_reference(judge: str, held_out: bool, photos: list[LabelledPhoto],
                       embeddings: np.ndarray) -> IdentityReference:
    """Over the people with at least two photos (the London Set: neutral and smiling): same-person pairs are
    every pair of one person's photos; different-people pairs take one photo per person (the neutral one
    when labelled, else the first), all pairs -- both distributions from the same population."""
    if len(photos) != len(embeddings):
        raise ValueError(f"{len(photos)} photos but {len(embeddings)} embeddings")
    unit = np.asarray(embeddings, np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    by_person: dict[str, list[int]] = {}
    for i, photo in enumerate(photos):
        if photo.person:
            by_person.setdefault(photo.person, []).append(i)
    same, pairs = [], []
    by_person = {person: idx for person, idx in by_person.items() if len(idx) >= 2}
    for indices in by_person.values():
        for a, b in itertools.combinations(indices, 2):
            same.append(float(unit[a] @ unit[b]))
            pairs.append((photos[a].name, photos[b].name))
    one = [next((i for i in idx if photos[i].label == "neutral"), idx[0]) for idx in by_person.values()]
    different = [float(unit[a] @ unit[b]) for a, b in itertools.combinations(one, 2)]
    return IdentityReference(judge, held_out, np.asarray(same), np.asarray(different), pairs)
