"""How shut are shut eyes? Eyeball pixels left visible with both eyes closed, per person and blink strength.

    PYTHONPATH=src .venv/bin/python benchmarks/closed_eyes.py [--gains 1,1.3,1.5] [PHOTO ...]

For each photo (default: the London Set's neutral photos of the shared faces) the person is reconstructed and
posed at their rest with eyeBlink_L and eyeBlink_R driven at each gain (1 = the rig's full blink: the person's own
blink shapes, `sie3d.head.eyelids`), and the
head is rendered frontally at 512 px (the preview camera): the count of pixels whose visible surface is an
eyeball (sclera or iris) is printed. A closed eye leaves only the slit under the lashes (a few hundred pixels at
most); more is an eye the blink leaves partly open. Reads geometry only: it judges nothing.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from sie3d.avatar import Models, ReconstructConfig, reconstruct
from sie3d.eval.harness import resolve_photos
from sie3d.head.names import ICT_NAMES
from sie3d.head.texture import render_layout
from sie3d.photo import load_photo
from sie3d.previews import preview_cameras
from sie3d.render import rasterize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path)
    parser.add_argument("--gains", default="1", help="eyeBlink values, comma-separated (default 1)")
    args = parser.parse_args()
    gains = [float(g) for g in args.gains.split(",")]
    photos = args.photos or resolve_photos(None)[0]  # as `sie3d eval` chooses them
    models = Models()
    head, topo = models.head, models.head.topology
    eyeball = np.zeros(len(topo.faces), bool)
    eyeball[topo.faces_of("M_ScleraLeft", "M_ScleraRight", "M_IrisLeft", "M_IrisRight")] = True
    shown = torch.from_numpy(render_layout(head).visible_faces)
    blink = [ICT_NAMES.index(n) for n in ("eyeBlink_L", "eyeBlink_R")]
    table: dict[float, list[int]] = {g: [] for g in gains}
    try:
        for photo in photos:
            person = reconstruct(load_photo(photo), models, ReconstructConfig(texture_size=256))
            counts = []
            for gain in gains:
                coefficients = person.rest_expression.astype(np.float32)
                coefficients[blink] = gain
                with torch.no_grad():
                    verts = head(torch.from_numpy(person.fit.identity)[None], torch.from_numpy(coefficients)[None])[0]
                cams = preview_cameras(head, verts, (0.0,), 512)
                tri = rasterize(verts, torch.from_numpy(topo.faces), cams, face_mask=shown).tri_id[0].numpy()
                counts.append(int(eyeball[tri[tri >= 0]].sum()))
                table[gain].append(counts[-1])
            print(f"{photo.name}: " + ", ".join(f"eyeBlink {g:g}: {n} px" for g, n in zip(gains, counts, strict=True)))
    finally:
        models.close()
    for gain, counts in table.items():
        print(f"eyeBlink {gain:g}: median {statistics.median(counts):.0f} px, 90th percentile "
              f"{np.percentile(counts, 90):.0f}, max {max(counts)}, above 400: {sum(c > 400 for c in counts)} of "
              f"{len(counts)}")  # fmt: skip


if __name__ == "__main__":
    main()
