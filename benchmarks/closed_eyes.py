"""How shut are shut eyes? Eyeball pixels left visible, per person, with ICT's plain blink and the person's own.

    PYTHONPATH=src .venv/bin/python benchmarks/closed_eyes.py [PHOTO ...]

For each photo (default: the London Set's neutral photos of the shared faces) the person is reconstructed and
posed at their rest with both eyes at a blink of 1 and of 0.5, each way: ICT's plain eyeBlink shapes added
linearly (as sie3d posed them before `sie3d.head.eyelids`) and the person's own (`HeadModel.forward`). The
head is rendered frontally at 512 px (the preview camera, the eyelash cards left out). Printed per person:

- shut (blink 1): the pixels whose visible surface is an eyeball (sclera or iris). A shut eye leaves only the
  slit under the lashes (a few dozen pixels); more is an eye the blink leaves partly open or a cornea through
  the lid;
- half closed (blink 0.5): the eyeball pixels above the upper lid's margin (its eyelash roots, projected),
  which is the cornea showing through the lid; also for the person's full-blink targets alone, linearly (what
  an engine shows that drives only the ARKit targets, not the exported in-between ones).

Reads geometry only: it judges nothing.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from sie3d.avatar import Models, ReconstructConfig, reconstruct
from sie3d.eval.harness import resolve_photos
from sie3d.hair.config import HairConfig
from sie3d.head.model import BLINKS
from sie3d.head.texture import render_layout
from sie3d.photo import load_photo
from sie3d.previews import preview_cameras
from sie3d.render import project, rasterize


def eyeball_pixels(models: Models, verts: torch.Tensor) -> tuple[np.ndarray, int]:
    """((N, 2) x, y of the eyeball pixels of the 512-px frontal render of `verts`, how many lie above the upper
    lids' margins)."""
    head, topo = models.head, models.head.topology
    eyeball = np.zeros(len(topo.faces), bool)
    eyeball[topo.faces_of("M_ScleraLeft", "M_ScleraRight", "M_IrisLeft", "M_IrisRight")] = True
    cams = preview_cameras(head, verts, (0.0,), 512)
    shown = torch.from_numpy(render_layout(head).visible_faces)
    tri = rasterize(verts, torch.from_numpy(topo.faces), cams, face_mask=shown).tri_id[0].numpy()
    ys, xs = np.nonzero((tri >= 0) & eyeball[np.maximum(tri, 0)])
    above = 0
    for eye in head.lids.eyes:
        margin = project(verts[torch.from_numpy(eye.upper)], cams)[0][0].numpy()
        margin = margin[np.argsort(margin[:, 0])]
        inside = (xs > margin[0, 0]) & (xs < margin[-1, 0])
        above += int((ys[inside] < np.interp(xs[inside], margin[:, 0], margin[:, 1]) - 2).sum())
    return np.stack([xs, ys], 1), above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path)
    args = parser.parse_args()
    photos = args.photos or resolve_photos(None)[0]  # as `sie3d eval` chooses them
    models = Models()
    head = models.head
    rows: dict[str, list[int]] = {"shut, ICT": [], "shut, own": [], "half, ICT": [], "half, own": [],
                                  "half, own targets only": []}
    try:
        for photo in photos:
            config = ReconstructConfig(texture_size=256, hair=HairConfig(enabled=False))
            person = reconstruct(load_photo(photo), models, config)
            identity = torch.from_numpy(person.fit.identity)[None]
            rest = person.rest_expression.astype(np.float32)
            rest[BLINKS] = 0.0
            for weight, label in ((1.0, "shut"), (0.5, "half")):
                posed = rest.copy()
                posed[BLINKS] = weight
                with torch.no_grad():
                    plain = head(identity, torch.from_numpy(posed)[None], own_lids=False)[0]
                    own = head(identity, torch.from_numpy(posed)[None])[0]
                    # an engine driving only the ARKit targets: the person's full-blink targets, linearly
                    targets = head(identity, torch.from_numpy(rest)[None])[0] + weight * head.expression_deltas(
                        person.fit.identity)[BLINKS].sum(0)  # fmt: skip
                ways = [(plain, "ICT"), (own, "own")] + ([(targets, "own targets only")] if label == "half" else [])
                for verts, way in ways:
                    pixels, above = eyeball_pixels(models, verts)
                    rows[f"{label}, {way}"].append(len(pixels) if label == "shut" else above)
            print(f"{photo.name}: " + ", ".join(f"{k} {v[-1]}" for k, v in rows.items()), flush=True)
    finally:
        models.close()
    for label, counts in rows.items():
        what = "eyeball px" if label.startswith("shut") else "eyeball px above the lid"
        print(f"{label}: {what}: median {statistics.median(counts):.0f}, 90th percentile "
              f"{np.percentile(counts, 90):.0f}, max {max(counts)}"
              + (f", above 400: {sum(c > 400 for c in counts)} of {len(counts)}" if label.startswith("shut") else ""))


if __name__ == "__main__":
    main()
