"""Renderer timings: prints figures, asserts nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_render.py [--runs 10] [--threads N]

1. the optimisation workload: 4 views at 256^2, forward + backward (loss on the RGB images, gradients
   to the vertices and the SH lighting; texture gradients reported separately; and with the anger
   prototype's expression wrinkles, gradients to the 53 expression coefficients too);
2. a 512^2 single-view preview, forward only.

The mesh is the real ICT-FaceKit head (26,719 vertices, ~52k triangles of which the hidden helper
shells are masked out) with its own UV topology on 8 UDIM tiles of random texture.
Targets on 2 CPU cores: (1) <= 0.25 s, (2) <= 0.5 s.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import time

import torch

from sie3d.render import Cameras, orbit_cameras, rasterize, render_mesh

log = logging.getLogger("bench_render")

def ict_head() -> dict[str, torch.Tensor]:
    """The real workload: the ICT-FaceKit neutral head (26,719 vertices) with sie3d's render layout (UVs on
    8 UDIM tiles, the Unreal helper shells and eyelash cards hidden)."""
    from sie3d.head.model import HeadModel
    from sie3d.head.texture import render_layout

    head = HeadModel()
    layout = render_layout(head)
    return {
        "verts": head.neutral.clone(),
        "faces": torch.from_numpy(head.topology.faces),
        "uv": torch.from_numpy(layout.uvs),
        "uv_faces": torch.from_numpy(layout.uv_faces),
        "face_mask": torch.from_numpy(layout.visible_faces),
        "target": head.neutral[: 9409].mean(0),
    }


def _median_time(fn, runs: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="timed runs per figure (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--tile-size", type=int, default=1024, help="texture tile resolution")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    mesh = ict_head()
    verts, faces, mask = mesh["verts"], mesh["faces"], mesh["face_mask"]
    gen = torch.Generator().manual_seed(0)
    tiles = torch.rand(1, 8, 3, args.tile_size, args.tile_size, generator=gen)
    sh = torch.zeros(1, 9, 3)
    sh[:, 0] = math.sqrt(4 * math.pi) * 0.8
    sh[:, 2] = 0.6  # light from +z (the face side)
    distance = 60.0
    views: Cameras = orbit_cameras([0.0, 30.0, -30.0, 60.0], distance, target=mesh["target"], focal_px=524.0,
                                   width=256, height=256)
    preview = orbit_cameras([20.0], distance, target=mesh["target"], focal_px=1048.0, width=512, height=512)
    log.info(
        "torch %s, torch.get_num_threads() = %d, mesh: %d vertices, %d triangles, texture 8 x %d^2",
        torch.__version__,
        torch.get_num_threads(),
        verts.shape[0],
        faces.shape[0],
        args.tile_size,
    )

    tiles_leaf = tiles.detach().requires_grad_(True)  # a leaf that collects texture gradients

    def step(texture_grad: bool) -> None:
        v = verts.clone().requires_grad_(True)
        light = sh.clone().requires_grad_(True)
        tiles_leaf.grad = None
        tex = tiles_leaf if texture_grad else tiles
        out = render_mesh(
            v, faces, views, uv=mesh["uv"], uv_faces=mesh["uv_faces"], texture=tex, sh_coeffs=light, face_mask=mask
        )
        out.rgb.square().mean().backward()

    frags = rasterize(verts, faces, views, face_mask=mask)
    coverage = frags.mask.float().mean().item()
    t_rast, _ = _median_time(lambda: rasterize(verts, faces, views, face_mask=mask), args.runs)
    t_cull, _ = _median_time(lambda: rasterize(verts, faces, views, face_mask=mask, cull_backfaces=True), args.runs)
    t_fb, t_fb_min = _median_time(lambda: step(False), args.runs)
    t_fb_tex, _ = _median_time(lambda: step(True), args.runs)

    def preview_forward() -> None:
        with torch.no_grad():
            render_mesh(
                verts, faces, preview, uv=mesh["uv"], uv_faces=mesh["uv_faces"], texture=tiles, sh_coeffs=sh,
                face_mask=mask,
            )

    t_prev, t_prev_min = _median_time(preview_forward, args.runs)

    from sie3d.expressions import prototype
    from sie3d.head.model import HeadModel
    from sie3d.head.wrinkles import wrinkle_maps

    maps = wrinkle_maps(HeadModel())
    none = [torch.zeros(1, 3, 1, 1)] * 7  # tiles 1-7 have no wrinkles

    def step_wrinkles() -> None:
        v = verts.clone().requires_grad_(True)
        light = sh.clone().requires_grad_(True)
        coefficients = torch.from_numpy(prototype("anger")).requires_grad_(True)
        out = render_mesh(v, faces, views, uv=mesh["uv"], uv_faces=mesh["uv_faces"], texture=tiles, sh_coeffs=light,
                          face_mask=mask, detail=[maps.detail(coefficients), *none])  # fmt: skip
        out.rgb.square().mean().backward()

    t_fb_wr, _ = _median_time(step_wrinkles, args.runs)
    log.info("4 x 256^2: mesh covers %.0f%% of the pixels", 100 * coverage)
    log.info("  rasterize only:                     %.3f s  (cull_backfaces=True: %.3f s)", t_rast, t_cull)
    log.info("  render_mesh forward+backward:       %.3f s  (min %.3f)  target <= 0.25 s", t_fb, t_fb_min)
    log.info("  ... with texture gradients too:     %.3f s", t_fb_tex)
    log.info("  ... with wrinkles (grads to coefficients too): %.3f s", t_fb_wr)
    log.info("1 x 512^2 preview, forward (no grad): %.3f s  (min %.3f)  target <= 0.5 s", t_prev, t_prev_min)
    log.info(
        "median of %d runs; load average while running: %.2f (shared machine)", args.runs, os.getloadavg()[0]
    )


if __name__ == "__main__":
    main()
