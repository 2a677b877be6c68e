"""Splat export fidelity: prints figures, asserts nothing (the test is tests/test_splats.py).

    PYTHONPATH=src .venv/bin/python benchmarks/splat_psnr.py [--photo PHOTO] [--yaws 0,60] [--size 256]
        [--figure docs/results/splats_vs_mesh.png]

Reconstructs the photo's person (the photo's own expression), writes ``avatar.ply`` through
`write_outputs`, reads it back with plyfile, draws it with the reference splat renderer
(tests/splat_reference.py) from the preview cameras and prints the PSNR against the mesh render, both
2x2 supersampled (anti-aliased, as a viewer shows a mesh) and plain (aliased). With ``--figure`` it saves
the mesh renders (top row) over the splat renders (bottom row).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=None, help="default: london_025_happy.jpg of the shared faces")
    parser.add_argument("--yaws", default="0,60")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--figure", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import plyfile
    from PIL import Image

    from sie3d.avatar import Models, OutputConfig, Variant, posed_verts, reconstruct, render_views, write_outputs
    from sie3d.export.splats import SH_C0
    from sie3d.head.texture import linear_to_srgb
    from sie3d.photo import load_photo, shared_faces_dir
    from sie3d.previews import BACKGROUND, preview_cameras
    from splat_reference import render_splats

    photo = Path(args.photo) if args.photo else shared_faces_dir() / "london_025_happy.jpg"
    yaws = tuple(float(y) for y in args.yaws.split(","))
    size = args.size
    with Models.load() as models, tempfile.TemporaryDirectory() as tmp:
        person = reconstruct(load_photo(photo), models)
        coefficients = person.photo_expression
        start = time.perf_counter()
        write_outputs(person, models, [Variant("expression", coefficients)], tmp,
                      OutputConfig(formats=("ply",), previews=False, in_photo=False), save_person=False)  # fmt: skip
        export_s = time.perf_counter() - start
        path = Path(tmp) / "expression" / "avatar.ply"
        megabytes = path.stat().st_size / 1e6
        vertex = plyfile.PlyData.read(str(path))["vertex"]
        get = lambda *names: np.stack([np.asarray(vertex[n], np.float64) for n in names], axis=1)  # noqa: E731
        means, quats = get("x", "y", "z") * 100, get("rot_0", "rot_1", "rot_2", "rot_3")
        scales = np.exp(get("scale_0", "scale_1", "scale_2")) * 100
        colors = 0.5 + SH_C0 * get("f_dc_0", "f_dc_1", "f_dc_2")
        opacities = 1 / (1 + np.exp(-np.asarray(vertex["opacity"], np.float64)))
        verts = posed_verts(person, models, coefficients)
        cams = preview_cameras(models.head, verts, yaws, size)
        plain = render_views(person, models, coefficients, cams).astype(np.float64)
        big = render_views(person, models, coefficients, preview_cameras(models.head, verts, yaws, 2 * size))
        smooth = big.astype(np.float64).reshape(len(yaws), size, 2, size, 2, 3).mean(axis=(2, 4))
        background = tuple(linear_to_srgb(np.asarray(BACKGROUND)))
        splats = []
        print(f"{photo.name}: {len(means)} splats, {megabytes:.1f} MB, export {export_s:.1f} s")
        for k, yaw in enumerate(yaws):
            start = time.perf_counter()
            image = render_splats(means, quats, scales, colors, opacities, cams.K[k].numpy(),
                                  cams.world_to_cam[k].numpy(), size, size, background)  # fmt: skip
            image = np.clip(image, 0, 1) * 255
            splats.append(image)
            psnr = [10 * np.log10(255**2 / np.mean((image - ref[k]) ** 2)) for ref in (smooth, plain)]
            print(f"yaw {yaw:+.0f}: PSNR {psnr[0]:.2f} dB against the supersampled mesh render, {psnr[1]:.2f} dB "
                  f"against the plain one ({size}x{size}; reference renderer {time.perf_counter() - start:.1f} s)")
    if args.figure:
        top = np.concatenate(list(smooth), axis=1)
        bottom = np.concatenate(splats, axis=1)
        Image.fromarray((np.concatenate([top, bottom], axis=0) + 0.5).astype(np.uint8)).save(args.figure)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
