"""Renderer timings: prints figures, asserts nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_render.py [--runs 10] [--threads N]

1. the optimisation workload: 4 views at 256^2, forward + backward (loss on the RGB images, gradients
   to the vertices and the SH lighting; texture gradients reported separately);
2. a 512^2 single-view preview, forward only.

The mesh is a synthetic ellipsoid with the size of the ICT-FaceKit head after hidden parts are dropped
(26,719 vertices of which ~11k are referenced, ~22k triangles, centimetres, UVs with their own
topology on two UDIM tiles). TODO: switch to the real ICT head once `sie3d.head` provides it.
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

NUM_VERTS = 26_719  # ICT-FaceKit full head
SEMI_AXES_CM = (8.0, 11.0, 9.5)  # x (ear to ear), y (chin to crown), z (back to nose)


def ellipsoid_head(n_lon: int = 150, n_lat: int = 74) -> dict[str, torch.Tensor]:
    """UV-sphere ellipsoid: 2 * n_lon * (n_lat - 1) triangles, padded with unused vertices to
    NUM_VERTS; UVs per face corner (separate topology): front half on tile 0, back half on tile 1."""
    rings = []
    for i in range(1, n_lat):
        theta = math.pi * i / n_lat  # from +y (crown) to -y
        for j in range(n_lon):
            phi = 2 * math.pi * j / n_lon  # 0 at +z (face), increasing toward +x
            rings.append((math.sin(theta) * math.sin(phi), math.cos(theta), math.sin(theta) * math.cos(phi)))
    body = torch.tensor(rings) * torch.tensor(SEMI_AXES_CM)
    poles = torch.tensor([[0.0, SEMI_AXES_CM[1], 0.0], [0.0, -SEMI_AXES_CM[1], 0.0]])
    top, bottom = body.shape[0], body.shape[0] + 1
    verts = torch.cat([body, poles, torch.zeros(max(NUM_VERTS - body.shape[0] - 2, 0), 3)])

    def vid(i: int, j: int) -> int:
        return (i - 1) * n_lon + j % n_lon

    faces = []
    for j in range(n_lon):
        faces.append((top, vid(1, j), vid(1, j + 1)))
        faces.append((bottom, vid(n_lat - 1, j + 1), vid(n_lat - 1, j)))
        for i in range(1, n_lat - 1):
            a, b, c, d = vid(i, j), vid(i, j + 1), vid(i + 1, j), vid(i + 1, j + 1)
            faces.extend([(a, c, d), (a, d, b)])
    faces_t = torch.tensor(faces)
    # Counter-clockwise from outside: flip faces whose normal points inward.
    corners = verts[faces_t]
    normal = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    inward = (normal * corners.mean(1)).sum(-1) < 0
    faces_t[inward] = faces_t[inward][:, [0, 2, 1]]

    # Planar-ish UVs per corner: longitude -> u (wrapped into a half-tile per hemisphere), height -> v.
    corners = verts[faces_t]  # (F, 3, 3)
    centre_phi = torch.atan2(corners[..., 0].mean(1), corners[..., 2].mean(1))  # (F,)
    tile = (centre_phi.abs() > math.pi / 2).float()  # back half -> tile 1
    u = 0.5 + 0.45 * corners[..., 0] / SEMI_AXES_CM[0] + tile.unsqueeze(1)
    v = 0.5 + 0.45 * corners[..., 1] / SEMI_AXES_CM[1]
    uv = torch.stack([u, v], dim=-1).reshape(-1, 2)
    uv_faces = torch.arange(uv.shape[0]).reshape(-1, 3)
    return {"verts": verts, "faces": faces_t, "uv": uv, "uv_faces": uv_faces}


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

    mesh = ellipsoid_head()
    verts, faces = mesh["verts"], mesh["faces"]
    gen = torch.Generator().manual_seed(0)
    tiles = torch.rand(1, 2, 3, args.tile_size, args.tile_size, generator=gen)
    sh = torch.zeros(1, 9, 3)
    sh[:, 0] = math.sqrt(4 * math.pi) * 0.8
    sh[:, 2] = 0.6  # light from +z (the face side)
    distance = 60.0
    views: Cameras = orbit_cameras([0.0, 30.0, -30.0, 60.0], distance, focal_px=524.0, width=256, height=256)
    preview = orbit_cameras([20.0], distance, focal_px=1048.0, width=512, height=512)
    log.info(
        "torch %s, torch.get_num_threads() = %d, mesh: %d vertices, %d triangles, texture 2 x %d^2",
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
            v, faces, views, uv=mesh["uv"], uv_faces=mesh["uv_faces"], texture=tex, sh_coeffs=light
        )
        out.rgb.square().mean().backward()

    frags = rasterize(verts, faces, views)
    coverage = frags.mask.float().mean().item()
    t_rast, _ = _median_time(lambda: rasterize(verts, faces, views), args.runs)
    t_cull, _ = _median_time(lambda: rasterize(verts, faces, views, cull_backfaces=True), args.runs)
    t_fb, t_fb_min = _median_time(lambda: step(False), args.runs)
    t_fb_tex, _ = _median_time(lambda: step(True), args.runs)

    def preview_forward() -> None:
        with torch.no_grad():
            render_mesh(
                verts, faces, preview, uv=mesh["uv"], uv_faces=mesh["uv_faces"], texture=tiles, sh_coeffs=sh
            )

    t_prev, t_prev_min = _median_time(preview_forward, args.runs)
    log.info("4 x 256^2: mesh covers %.0f%% of the pixels", 100 * coverage)
    log.info("  rasterize only:                     %.3f s  (cull_backfaces=True: %.3f s)", t_rast, t_cull)
    log.info("  render_mesh forward+backward:       %.3f s  (min %.3f)  target <= 0.25 s", t_fb, t_fb_min)
    log.info("  ... with texture gradients too:     %.3f s", t_fb_tex)
    log.info("1 x 512^2 preview, forward (no grad): %.3f s  (min %.3f)  target <= 0.5 s", t_prev, t_prev_min)
    log.info(
        "median of %d runs; load average while running: %.2f (shared machine)", args.runs, os.getloadavg()[0]
    )


if __name__ == "__main__":
    main()
