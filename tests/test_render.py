"""Tests for sie3d.render: kornia-style checklist (shapes, bad input, known values, oracle, gradcheck)."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from sie3d.render import (
    Cameras,
    DirectionalLight,
    Fragments,
    RenderOutput,
    barycentrics,
    composite,
    draw_in_window,
    interpolate,
    lambert,
    look_at,
    orbit_cameras,
    perspective_K,
    project,
    rasterize,
    rasterize_reference,
    render_mesh,
    sample_texture,
    sh_basis,
    sh_shading,
    to_camera,
    vertex_normals,
)

F64 = torch.float64


def quad_scene(dtype=F64, width=16, height=16):
    """A 2 x 2 square in the z = 0 plane facing +z, seen from yaw 0 at distance 4 with focal 8 px:
    it projects to u, v in [6, 10], i.e. exactly the pixel block rows 6..9 x columns 6..9."""
    verts = torch.tensor(
        [[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]], dtype=dtype
    )
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])  # counter-clockwise seen from +z
    cams = orbit_cameras([0.0], 4.0, focal_px=8.0, width=width, height=height, dtype=dtype)
    return verts, faces, cams


def random_scene(seed: int, num_faces: int = 12, distance: float = 2.5, dtype=F64):
    """Independent random triangles (overlapping, intersecting); with a small distance some cross the
    camera plane or lie behind the camera."""
    gen = torch.Generator().manual_seed(seed)
    verts = torch.randn(3 * num_faces, 3, generator=gen, dtype=dtype)
    faces = torch.randperm(3 * num_faces, generator=gen).reshape(num_faces, 3)
    cams = orbit_cameras(
        [0.0, 140.0], distance, focal_px=11.0, width=16, height=12, dtype=dtype, pitch_degrees=10
    )
    return verts, faces, cams


def uv_sphere(n_lon: int = 12, n_lat: int = 7, dtype=F64):
    verts = [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]
    for i in range(1, n_lat):
        theta = math.pi * i / n_lat
        for j in range(n_lon):
            phi = 2 * math.pi * j / n_lon
            verts.append([math.sin(theta) * math.sin(phi), math.cos(theta), math.sin(theta) * math.cos(phi)])

    def vid(i, j):
        return 2 + (i - 1) * n_lon + j % n_lon

    faces = []
    for j in range(n_lon):
        faces += [[0, vid(1, j), vid(1, j + 1)], [1, vid(n_lat - 1, j + 1), vid(n_lat - 1, j)]]
        for i in range(1, n_lat - 1):
            a, b, c, d = vid(i, j), vid(i, j + 1), vid(i + 1, j), vid(i + 1, j + 1)
            faces += [[a, c, d], [a, d, b]]
    return torch.tensor(verts, dtype=dtype), torch.tensor(faces)


# --------------------------------------------------------------------------------------------- cameras


def test_perspective_K_known_value():
    K = perspective_K(100.0, 64, 48)
    assert torch.equal(K, torch.tensor([[100.0, 0.0, 32.0], [0.0, 100.0, 24.0], [0.0, 0.0, 1.0]]))


def test_project_known_points():
    cams = orbit_cameras([0.0], 5.0, focal_px=100.0, width=64, height=48, dtype=F64)
    pts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    uv, depth = project(pts, cams)
    assert uv.shape == (1, 4, 2) and depth.shape == (1, 4)
    # World +x is on the image right, world +y is up (smaller v), +z is toward the camera.
    expected_uv = torch.tensor([[32.0, 24.0], [52.0, 24.0], [32.0, 4.0], [32.0, 24.0]], dtype=F64)
    torch.testing.assert_close(uv[0], expected_uv)
    torch.testing.assert_close(depth[0], torch.tensor([5.0, 5.0, 5.0, 4.0], dtype=F64))


def test_project_batched_points_and_gradcheck():
    cams = orbit_cameras([0.0, 50.0], 5.0, focal_px=30.0, dtype=F64)
    pts = torch.randn(2, 5, 3, dtype=F64, requires_grad=True)
    uv, depth = project(pts, cams)
    assert uv.shape == (2, 5, 2) and depth.shape == (2, 5)
    assert torch.autograd.gradcheck(lambda p: project(p, cams), (pts,))


def test_look_at_is_orthonormal_and_looks_at_target():
    gen = torch.Generator().manual_seed(0)
    eye = torch.randn(6, 3, generator=gen, dtype=F64) * 3
    target = torch.randn(6, 3, generator=gen, dtype=F64)
    w2c = look_at(eye, target)
    assert w2c.shape == (6, 4, 4)
    rot = w2c[:, :3, :3]
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3, dtype=F64).expand(6, 3, 3))
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(6, dtype=F64))
    cams = Cameras(perspective_K(50.0, 32, 32, dtype=F64).expand(6, 3, 3), w2c, 32, 32)
    torch.testing.assert_close(cams.centers_world, eye)
    # The target sits on the optical axis, in front of the camera.
    t_cam = to_camera(target.unsqueeze(1), cams)[:, 0]
    torch.testing.assert_close(t_cam[:, :2], torch.zeros(6, 2, dtype=F64), atol=1e-12, rtol=0)
    assert bool((t_cam[:, 2] > 0).all())
    # World up appears up in the image: camera y (down) has a negative world-y component.
    assert bool((rot[:, 1, 1] < 0).all())
    assert look_at(torch.tensor([0.0, 0.0, 3.0]), (0.0, 0.0, 0.0)).shape == (4, 4)


def test_look_at_degenerate_raises():
    with pytest.raises(ValueError, match="parallel"):
        look_at((0.0, 5.0, 0.0), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="coincide"):
        look_at((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))


def test_orbit_yaw_directions():
    cams = orbit_cameras([0.0, 90.0, 180.0], 2.0, target=(0.0, 0.1, 0.0), dtype=F64)
    centres = cams.centers_world
    torch.testing.assert_close(centres[0], torch.tensor([0.0, 0.1, 2.0], dtype=F64))
    torch.testing.assert_close(centres[1], torch.tensor([2.0, 0.1, 0.0], dtype=F64))  # positive yaw -> +x
    torch.testing.assert_close(centres[2], torch.tensor([0.0, 0.1, -2.0], dtype=F64), atol=1e-12, rtol=0)
    up = orbit_cameras([0.0], 2.0, pitch_degrees=30.0, dtype=F64).centers_world
    assert float(up[0, 1]) > 0


def test_orbit_yaw0_sees_plus_z_face():
    # Two quads: face 0/1 at z = +0.5 facing +z, faces 2/3 at z = -0.5 facing -z.
    verts = torch.tensor(
        [
            [-1, -1, 0.5],
            [1, -1, 0.5],
            [1, 1, 0.5],
            [-1, 1, 0.5],
            [-1, -1, -0.5],
            [1, -1, -0.5],
            [1, 1, -0.5],
            [-1, 1, -0.5],
        ],
        dtype=F64,
    )
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 6, 5], [4, 7, 6]])
    cams = orbit_cameras([0.0, 180.0], 5.0, focal_px=10.0, width=8, height=8, dtype=F64)
    frags = rasterize(verts, faces, cams)
    centre = frags.tri_id[:, 3:5, 3:5]
    assert bool((centre[0] <= 1).all()) and bool((centre[0] >= 0).all())
    assert bool((centre[1] >= 2).all())
    # The +z face is front-facing at yaw 0: it survives back-face culling, the -z face does not.
    culled = rasterize(verts, faces, cams[0], cull_backfaces=True)
    assert set(culled.tri_id.unique().tolist()) == {-1, 0, 1}


def test_cameras_validation():
    K = perspective_K(10.0, 8, 8).expand(2, 3, 3)
    w2c = torch.eye(4).expand(2, 4, 4)
    with pytest.raises(ValueError, match="K"):
        Cameras(K[0], w2c, 8, 8)
    with pytest.raises(ValueError, match="world_to_cam"):
        Cameras(K, w2c[:, :3], 8, 8)
    with pytest.raises(ValueError, match="1 cameras|2 cameras"):
        Cameras(K[:1], w2c, 8, 8)
    with pytest.raises(ValueError, match="width"):
        Cameras(K, w2c, 0, 8)
    with pytest.raises(ValueError, match="floating"):
        Cameras(K.long(), w2c, 8, 8)
    cams = Cameras(K, w2c, 8, 8)
    assert cams[1].batch_size == 1 and cams[-1].batch_size == 1
    with pytest.raises(ValueError, match="points_world"):
        project(torch.zeros(5, 2), cams)
    with pytest.raises(ValueError, match="batch size 3"):
        project(torch.zeros(3, 5, 3), cams)


# ------------------------------------------------------------------------------------------ rasterize


def test_rasterize_shapes_and_dtypes():
    verts, faces, cams = quad_scene(dtype=torch.float32, width=20, height=10)
    frags = rasterize(verts, faces, cams)
    assert isinstance(frags, Fragments)
    assert frags.tri_id.shape == (1, 10, 20) and frags.tri_id.dtype == torch.long
    assert frags.bary.shape == (1, 10, 20, 3) and frags.bary.dtype == torch.float32
    assert frags.depth.shape == (1, 10, 20) and frags.depth.dtype == torch.float32
    assert not frags.bary.requires_grad


def test_rasterize_known_quad():
    verts, faces, cams = quad_scene()
    frags = rasterize(verts, faces, cams)
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[6:10, 6:10] = True
    assert torch.equal(frags.mask[0], expected)
    torch.testing.assert_close(frags.depth[0][expected], torch.full((16,), 4.0, dtype=F64))
    assert bool((frags.depth[0][~expected] == 0).all())
    # Barycentrics reproduce the pixel centre's world position.
    world = (frags.bary[0][expected].unsqueeze(-1) * verts[faces[frags.tri_id[0][expected]]]).sum(1)
    ys, xs = torch.nonzero(expected, as_tuple=True)
    torch.testing.assert_close(world[:, 0], (xs.to(F64) + 0.5 - 8.0) / 2.0)
    torch.testing.assert_close(world[:, 1], -(ys.to(F64) + 0.5 - 8.0) / 2.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("distance", [2.5, 0.7])  # 0.7: many triangles cross the camera plane
@pytest.mark.parametrize("cull", [False, True])
def test_rasterize_matches_reference(seed, distance, cull):
    verts, faces, cams = random_scene(seed, distance=distance)
    if distance < 1:  # make sure the scene really exercises the camera-plane crossing
        z = to_camera(verts, cams)[..., 2][:, faces]
        assert int(((z.amin(-1) < 0) & (z.amax(-1) > 0)).sum()) >= 4
    fast = rasterize(verts, faces, cams, cull_backfaces=cull, near=0.05)
    ref = rasterize_reference(verts, faces, cams, cull_backfaces=cull, near=0.05)
    assert int(ref.mask.sum()) > 20  # the scene is not empty
    differ = fast.tri_id != ref.tri_id
    # Only exact depth ties may pick another face; both must then see a face at the same depth.
    assert bool((fast.mask[differ] & ref.mask[differ]).all())
    torch.testing.assert_close(fast.depth, ref.depth, atol=1e-9, rtol=1e-9)
    same = ~differ
    torch.testing.assert_close(fast.bary[same], ref.bary[same], atol=1e-9, rtol=0)
    assert bool((fast.depth[fast.mask] >= 0.05).all())


def test_rasterize_float32_close_to_reference():
    mismatched, covered = 0, 0
    for seed in range(3):
        verts, faces, cams = random_scene(seed, distance=1.5)
        fast = rasterize(verts.float(), faces, cams.to(dtype=torch.float32), near=0.05)
        ref = rasterize_reference(verts, faces, cams, near=0.05)
        mismatched += int((fast.tri_id != ref.tri_id).sum())
        covered += int(ref.mask.sum())
        ok = fast.tri_id == ref.tri_id
        torch.testing.assert_close(fast.bary[ok].double(), ref.bary[ok], atol=1e-4, rtol=0)
    assert mismatched <= 0.01 * covered


def test_rasterize_overlap_nearest_wins_and_ties_go_to_lower_index():
    tri = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [0.0, 1.0]], dtype=F64)
    far = torch.cat([tri, torch.full((3, 1), -1.0, dtype=F64)], 1)
    near = torch.cat([tri, torch.full((3, 1), 1.0, dtype=F64)], 1)
    cams = orbit_cameras([0.0], 6.0, focal_px=12.0, width=12, height=12, dtype=F64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    for first, second, nearer in ((far, near, 1), (near, far, 0)):
        frags = rasterize(torch.cat([first, second]), faces, cams)
        assert set(frags.tri_id[frags.mask].tolist()) == {nearer}
    frags = rasterize(torch.cat([near, near]), faces, cams)  # identical triangles: exact tie
    assert set(frags.tri_id[frags.mask].tolist()) == {0}
    ref = rasterize_reference(torch.cat([near, near]), faces, cams)
    assert torch.equal(frags.tri_id, ref.tri_id)


def test_rasterize_closed_grid_has_no_holes():
    # A plane of triangles whose vertices and edges pass exactly through pixel centres: every pixel
    # centre on or inside the grid must be covered exactly by the edge rule (no pinholes).
    n = 8
    xs = torch.arange(n + 1, dtype=F64) * 2.0 - n + 0.5  # pixel-centre aligned (focal 16, depth 16)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    verts = torch.stack([gx.reshape(-1), gy.reshape(-1), torch.zeros((n + 1) ** 2, dtype=F64)], 1)
    gen = torch.Generator().manual_seed(1)
    faces = []
    for r in range(n):
        for c in range(n):
            a, b, d, e = (
                r * (n + 1) + c,
                r * (n + 1) + c + 1,
                (r + 1) * (n + 1) + c,
                (r + 1) * (n + 1) + c + 1,
            )
            if torch.rand(1, generator=gen) < 0.5:
                faces += [[a, b, e], [a, e, d]]
            else:
                faces += [[a, b, d], [b, e, d]]
    cams = orbit_cameras([0.0], 16.0, focal_px=16.0, width=32, height=32, dtype=F64)
    for dtype in (F64, torch.float32):
        frags = rasterize(verts.to(dtype), torch.tensor(faces), cams.to(dtype=dtype))
        uv, _ = project(verts, cams)
        c0, c1 = int(uv[0, :, 0].min() - 0.5), int(uv[0, :, 0].max() - 0.5)
        r0, r1 = int(uv[0, :, 1].min() - 0.5), int(uv[0, :, 1].max() - 0.5)
        assert bool(frags.mask[0, r0 : r1 + 1, c0 : c1 + 1].all()), "pinhole inside a closed surface"
        assert int(frags.mask.sum()) == (r1 - r0 + 1) * (c1 - c0 + 1) == 17 * 17


def test_rasterize_triangle_through_camera_plane():
    # One huge triangle with a vertex behind the camera: it must neither crash nor smear; the drawn part
    # matches the oracle and has depth >= near.
    verts = torch.tensor([[-3.0, -2.0, 0.0], [3.0, -2.0, 0.0], [0.0, 0.5, 8.0]], dtype=F64)
    faces = torch.tensor([[0, 1, 2]])
    cams = orbit_cameras([0.0], 4.0, focal_px=8.0, width=16, height=16, dtype=F64)
    assert float(to_camera(verts, cams)[0, 2, 2]) < 0
    for near in (1e-3, 1.0):
        fast = rasterize(verts, faces, cams, near=near)
        ref = rasterize_reference(verts, faces, cams, near=near)
        assert torch.equal(fast.tri_id, ref.tri_id)
        assert bool(torch.isfinite(fast.depth).all()) and bool(torch.isfinite(fast.bary).all())
        assert bool((fast.depth[fast.mask] >= near).all())
    # Entirely behind the camera: nothing.
    behind = verts.clone()
    behind[:, 2] = 10.0
    assert not bool(rasterize(behind, faces, cams).mask.any())


def test_rasterize_face_mask_and_batched_verts():
    verts, faces = uv_sphere()
    cams = orbit_cameras([0.0, 90.0], 4.0, focal_px=20.0, width=24, height=24, dtype=F64)
    keep = torch.ones(faces.shape[0], dtype=torch.bool)
    keep[::2] = False
    frags = rasterize(verts, faces, cams, face_mask=keep)
    assert bool(keep[frags.tri_id[frags.mask]].all())
    # Per-view vertex sets give the same result as rendering each view separately.
    moved = torch.stack([verts, verts + torch.tensor([0.3, 0.0, 0.0], dtype=F64)])
    both = rasterize(moved, faces, cams)
    for b in range(2):
        single = rasterize(moved[b], faces, cams[b])
        assert torch.equal(both.tri_id[b], single.tri_id[0])


def test_rasterize_depth_limit_draws_what_is_nearer_and_culls_hidden_faces(monkeypatch):
    raster = importlib.import_module("sie3d.render.rasterize")  # the module (the package exports the function)

    sphere, sphere_faces = uv_sphere(48, 24)
    # ... and copies of it beyond the image's right and lower edges (boxes past the image: nothing drawn)
    right, down = torch.tensor([6.0, 0.0, 0.0], dtype=F64), torch.tensor([0.0, -6.0, 0.0], dtype=F64)
    verts = torch.cat([sphere, sphere + right, sphere + down])
    faces = torch.cat([sphere_faces, sphere_faces + len(sphere), sphere_faces + 2 * len(sphere)])
    cams = orbit_cameras([0.0, 70.0], 4.0, focal_px=60.0, width=64, height=48, dtype=F64)
    full = rasterize(verts, faces, cams)
    # What is already drawn: a wall cutting through the sphere's front (nearest point 3.0) on the left, a random
    # depth on a band of rows, nothing (inf) elsewhere.
    gen = torch.Generator().manual_seed(0)
    columns, rows = torch.arange(64)[None, None, :], torch.arange(48)[None, :, None]
    limit = torch.full((2, 48, 64), float("inf"), dtype=F64)
    limit = torch.where(columns < 40, torch.full_like(limit, 3.3), limit)
    limit = torch.where((rows >= 30) & (rows < 36), 3.0 + 2.0 * torch.rand(2, 48, 64, generator=gen, dtype=F64), limit)
    culled = []
    hidden = raster._hidden
    monkeypatch.setattr(raster, "_hidden", lambda *args: culled.append(int((out := hidden(*args)).sum())) or out)
    part = rasterize(verts, faces, cams, depth_limit=limit)
    assert culled[0] > 0.2 * len(sphere_faces)  # faces behind the wall: skipped before their pixels are tested
    shown = full.mask & (full.depth < limit)
    assert shown.any() and (full.mask & ~shown).any()
    assert torch.equal(part.mask, shown)
    assert torch.equal(part.tri_id[shown], full.tri_id[shown])
    torch.testing.assert_close(part.depth, torch.where(shown, full.depth, 0.0))
    with pytest.raises(ValueError, match="depth_limit"):
        rasterize(verts, faces, cams, depth_limit=limit[0])


def test_cameras_window_sees_the_same_pixels():
    verts, faces = uv_sphere(24, 12)
    cams = orbit_cameras([0.0, -40.0], 4.0, focal_px=40.0, width=40, height=32, dtype=F64)
    full = rasterize(verts, faces, cams)
    left, top = [7, 12], [3, 9]
    part = rasterize(verts, faces, cams.window(left, top, 20, 16))
    for b in range(2):
        window = (b, slice(top[b], top[b] + 16), slice(left[b], left[b] + 20))
        assert torch.equal(part.tri_id[b], full.tri_id[window])
        torch.testing.assert_close(part.depth[b], full.depth[window])
    with pytest.raises(ValueError, match="one left and one top per camera"):
        cams.window([0], [0, 0], 4, 4)


def test_draw_in_window_draws_what_the_whole_image_would():
    sphere, sphere_faces = uv_sphere(24, 12)
    cams = orbit_cameras([0.0, 35.0, -80.0], 4.0, focal_px=40.0, width=48, height=40, dtype=F64)
    head = render_mesh(sphere, sphere_faces, cams, vertex_colors=torch.full((len(sphere), 3), 0.5, dtype=F64))
    # A small quad in front of the sphere's upper left, drawn over it where it is nearer.
    quad, quad_faces, _ = quad_scene()
    quad = quad * 0.2 + torch.tensor([-0.4, 0.4, 1.2], dtype=F64)

    def draw(out, window_cams):
        drawn = render_mesh(quad, quad_faces, window_cams, vertex_colors=torch.ones(4, 3, dtype=F64),
                            depth_limit=torch.where(out.alpha > 0, out.depth, float("inf")))  # fmt: skip
        over = drawn.fragments.mask
        return RenderOutput(torch.where(over[..., None], drawn.rgb, out.rgb), torch.maximum(out.alpha, drawn.alpha),
                            torch.where(over, drawn.depth, out.depth), None, None)  # fmt: skip

    seen = []

    def in_window(out, window_cams):
        seen.append(out.rgb.shape)
        return draw(out, window_cams)

    whole, part = draw(head, cams), draw_in_window(head, quad, cams, in_window)
    assert seen[0][1] * seen[0][2] < 0.2 * 48 * 40  # a window, not the whole image
    assert (whole.alpha != head.alpha).any()  # the quad shows beside the sphere
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(part, name), getattr(whole, name))
    assert part.fragments is head.fragments


def test_rasterize_empty_inputs():
    verts, faces, cams = quad_scene()
    nothing = rasterize(verts, faces, cams, face_mask=torch.zeros(2, dtype=torch.bool))
    assert not bool(nothing.mask.any()) and bool((nothing.tri_id == -1).all())
    no_faces = rasterize(verts, torch.zeros(0, 3, dtype=torch.long), cams)
    assert not bool(no_faces.mask.any())
    out = render_mesh(verts, torch.zeros(0, 3, dtype=torch.long), cams, background=(0.0, 1.0, 0.0))
    torch.testing.assert_close(out.rgb, torch.tensor([0.0, 1.0, 0.0], dtype=F64).expand(1, 16, 16, 3))


def test_rasterize_bad_input_raises():
    verts, faces, cams = quad_scene()
    with pytest.raises(ValueError, match="faces"):
        rasterize(verts, faces.float(), cams)
    with pytest.raises(ValueError, match=r"faces must have shape \(F, 3\)"):
        rasterize(verts, faces[:, :2], cams)
    with pytest.raises(ValueError, match="only 4 vertices"):
        rasterize(verts, faces + 2, cams)
    with pytest.raises(ValueError, match="verts_world"):
        rasterize(verts[:, :2], faces, cams)
    with pytest.raises(ValueError, match="floating"):
        rasterize(verts.long(), faces, cams)
    with pytest.raises(ValueError, match="batch size 3"):
        rasterize(verts.expand(3, 4, 3), faces, cams)
    with pytest.raises(ValueError, match="face_mask"):
        rasterize(verts, faces, cams, face_mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        rasterize(verts, faces, cams, face_mask=torch.ones(2))
    with pytest.raises(ValueError, match="near"):
        rasterize(verts, faces, cams, near=0.0)


# -------------------------------------------------------------------------------------------- shading


def test_barycentrics_match_fragments_and_interpolation_is_perspective_correct():
    verts, faces = uv_sphere()
    verts = verts * torch.tensor([1.0, 1.3, 0.8], dtype=F64)
    cams = orbit_cameras([20.0, -60.0], 3.0, focal_px=20.0, width=24, height=20, dtype=F64)
    frags = rasterize(verts, faces, cams)
    bary = barycentrics(verts, faces, cams, frags)
    torch.testing.assert_close(bary, frags.bary)
    # Interpolated camera-space z is the rasterized depth, and interpolated world points project back
    # to their pixel centres: both only hold with perspective-correct barycentrics.
    z_cam = to_camera(verts, cams)[..., 2:]
    torch.testing.assert_close(interpolate(z_cam, faces, frags)[..., 0], frags.depth)
    points = interpolate(verts, faces, frags)
    mask = frags.mask
    uv, _ = project(points.reshape(2, -1, 3), cams)
    uv = uv.reshape(2, 20, 24, 2)[mask]
    ys, xs = torch.nonzero(mask, as_tuple=True)[1:]
    torch.testing.assert_close(uv, torch.stack([xs, ys], -1).to(F64) + 0.5)


def test_interpolate_shapes_background_and_errors():
    verts, faces, cams = quad_scene()
    frags = rasterize(verts, faces, cams)
    attr = torch.arange(8, dtype=F64).reshape(4, 2)
    out = interpolate(attr, faces, frags)
    assert out.shape == (1, 16, 16, 2)
    assert bool((out[~frags.mask] == 0).all())
    assert interpolate(attr.unsqueeze(0), faces, frags).shape == (1, 16, 16, 2)
    const = interpolate(torch.full((4, 3), 0.25, dtype=F64), faces, frags)
    torch.testing.assert_close(const[frags.mask], torch.full((16, 3), 0.25, dtype=F64))
    with pytest.raises(ValueError, match="attr"):
        interpolate(attr.long(), faces, frags)
    with pytest.raises(ValueError, match="batch size 2"):
        interpolate(attr.expand(2, 4, 2), faces, frags)
    with pytest.raises(ValueError, match="not both"):
        interpolate(attr, faces, frags, bary=frags.bary, verts_world=verts, cams=cams)
    with pytest.raises(ValueError, match="cams"):
        interpolate(attr, faces, frags, verts_world=verts)
    with pytest.raises(ValueError, match="Fragments"):
        interpolate(attr, faces, "fragments")


def _tiny_mesh_scene():
    verts, faces = uv_sphere(n_lon=5, n_lat=3)
    cams = orbit_cameras([15.0, 200.0], 3.0, focal_px=5.0, width=6, height=5, dtype=F64)
    return verts, faces, cams, rasterize(verts, faces, cams)


def test_gradcheck_interpolate_wrt_attributes():
    verts, faces, cams, frags = _tiny_mesh_scene()
    attr = torch.randn(2, verts.shape[0], 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: interpolate(a, faces, frags), (attr,))
    shared = torch.randn(verts.shape[0], 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: interpolate(a, faces, frags), (shared,))


def test_gradcheck_interpolate_wrt_vertex_positions():
    verts, faces, cams, frags = _tiny_mesh_scene()
    attr = torch.randn(verts.shape[0], 2, dtype=F64)
    v = verts.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: interpolate(attr, faces, frags, verts_world=p, cams=cams), (v,))
    grad = torch.autograd.grad(interpolate(attr, faces, frags, verts_world=v, cams=cams).sum(), v)[0]
    assert float(grad.abs().sum()) > 0


def test_sample_texture_uv_convention_and_udim():
    # 2 x 2 texture: row 0 (top) red, green; row 1 (bottom) blue, white.
    tex = torch.tensor(
        [[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]], dtype=F64
    ).unsqueeze(0)
    uv = torch.tensor([[0.25, 0.75], [0.75, 0.75], [0.25, 0.25], [0.75, 0.25], [-3.0, 5.0]], dtype=F64)
    out = sample_texture(tex, uv.reshape(1, 1, 5, 2))[0, 0]
    expected = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [1, 0, 0]], dtype=F64)
    torch.testing.assert_close(out, expected)  # (0, 0) is bottom-left, v up; outside clamps to border
    # UDIM: tile 0 black, tile 1 white; sampling u = 0.999 in tile 0 must not bleed into tile 1.
    tiles = torch.stack([torch.zeros(1, 4, 4, dtype=F64), torch.ones(1, 4, 4, dtype=F64)], 0).unsqueeze(0)
    uv = torch.tensor([[[[0.999, 0.5], [1.001, 0.5], [1.5, 0.5], [0.5, 0.5]]]], dtype=F64)
    out = sample_texture(tiles, uv, tile_id=torch.tensor([[[0, 1, 1, 0]]]))
    torch.testing.assert_close(out[0, 0, :, 0], torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=F64))
    # Shared texture for a batch of 3 views; per-view texture.
    uv3 = torch.rand(3, 4, 5, 2, dtype=F64)
    assert sample_texture(tex, uv3).shape == (3, 4, 5, 3)
    assert sample_texture(tex.expand(3, 3, 2, 2), uv3).shape == (3, 4, 5, 3)
    torch.testing.assert_close(sample_texture(tex, uv3), sample_texture(tex.expand(3, 3, 2, 2), uv3))
    with pytest.raises(ValueError, match="uv"):
        sample_texture(tex, uv3[..., :1])
    with pytest.raises(ValueError, match="batch size"):
        sample_texture(tex.expand(2, 3, 2, 2), uv3)
    with pytest.raises(ValueError, match="texture"):
        sample_texture(tex[0], uv3)


def test_gradcheck_sample_texture():
    gen = torch.Generator().manual_seed(3)
    tex = torch.rand(1, 2, 5, 4, generator=gen, dtype=F64, requires_grad=True)
    uv = (0.1 + 0.8 * torch.rand(2, 3, 3, 2, generator=gen, dtype=F64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, c: sample_texture(t, c), (tex, uv))
    tiles = torch.rand(2, 2, 2, 4, 4, generator=gen, dtype=F64, requires_grad=True)
    uv_udim = uv.detach().clone()
    uv_udim[..., 0] += torch.randint(0, 2, (2, 3, 3), generator=gen)
    uv_udim.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, c: sample_texture(t, c), (tiles, uv_udim))


def _fibonacci_sphere(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=F64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (3 - math.sqrt(5)) * i
    r = torch.sqrt(1 - z * z)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)


def test_sh_shading_known_values():
    normals = torch.nn.functional.normalize(torch.randn(2, 7, 3, dtype=F64), dim=-1)
    # Uniform radiance c: L_00 = c * sqrt(4 pi) -> shading exactly c.
    uniform = torch.zeros(2, 9, 3, dtype=F64)
    uniform[:, 0] = torch.tensor([0.5, 1.0, 2.0], dtype=F64) * math.sqrt(4 * math.pi)
    out = sh_shading(normals, uniform)
    assert out.shape == (2, 7, 3)
    torch.testing.assert_close(out, torch.tensor([0.5, 1.0, 2.0], dtype=F64).expand(2, 7, 3))
    # Any band-limited radiance: irradiance / pi equals the integral of L(w) max(0, n.w) dw / pi.
    gen = torch.Generator().manual_seed(0)
    coeffs = torch.randn(1, 9, generator=gen, dtype=F64)
    dirs = _fibonacci_sphere(200_000)
    radiance = sh_basis(dirs) @ coeffs[0]
    n = torch.nn.functional.normalize(torch.randn(5, 3, generator=gen, dtype=F64), dim=-1)
    numeric = (radiance * (dirs @ n.T).clamp(min=0).T).mean(1) * 4.0  # (4 pi / N) sum / pi
    analytic = sh_shading(n.unsqueeze(0), coeffs)[0, :, 0]
    torch.testing.assert_close(analytic, numeric, atol=2e-3, rtol=0)
    # Basis orthonormality on the sphere.
    basis = sh_basis(dirs)
    gram = basis.T @ basis * (4 * math.pi / dirs.shape[0])
    torch.testing.assert_close(gram, torch.eye(9, dtype=F64), atol=1e-3, rtol=0)


def test_gradcheck_sh_shading():
    gen = torch.Generator().manual_seed(1)
    normals = torch.nn.functional.normalize(torch.randn(2, 3, 2, 3, generator=gen, dtype=F64), dim=-1)
    normals.requires_grad_(True)
    rgb = torch.randn(2, 9, 3, generator=gen, dtype=F64, requires_grad=True)
    mono = torch.randn(1, 9, generator=gen, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda n, c: sh_shading(n, c), (normals, rgb))
    assert torch.autograd.gradcheck(lambda n, c: sh_shading(n, c), (normals, mono))
    assert sh_shading(normals, mono).shape == (2, 3, 2, 1)
    with pytest.raises(ValueError, match="sh_coeffs"):
        sh_shading(normals, torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="batch size"):
        sh_shading(normals, torch.zeros(3, 9, dtype=F64))


def test_lambert_and_composite_known_values():
    normals = torch.tensor([[[[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]]], dtype=F64)
    shade = lambert(normals, (0.0, 0.0, 2.0), ambient=0.2, diffuse=0.5)
    torch.testing.assert_close(shade[0, 0, :, 0], torch.tensor([0.7, 0.2], dtype=F64))
    rgb = torch.full((1, 1, 2, 3), 0.5, dtype=F64)
    alpha = torch.tensor([[[1.0, 0.25]]], dtype=F64)
    out = composite(rgb, alpha, (0.0, 0.0, 1.0))
    torch.testing.assert_close(out[0, 0, 1], torch.tensor([0.125, 0.125, 0.875], dtype=F64))
    with pytest.raises(ValueError, match="background"):
        composite(rgb, alpha, (1.0, 1.0))
    with pytest.raises(ValueError, match="alpha"):
        composite(rgb, alpha[0], (1.0, 1.0, 1.0))


def test_vertex_normals():
    verts, faces = uv_sphere(n_lon=24, n_lat=12)
    normals = vertex_normals(verts, faces)
    assert normals.shape == verts.shape
    assert float((normals * verts).sum(-1).min()) > 0.99  # outward and close to the radial direction
    batched = vertex_normals(verts.expand(2, -1, -1), faces)
    torch.testing.assert_close(batched[1], normals)
    quad, quad_faces, _ = quad_scene()
    torch.testing.assert_close(
        vertex_normals(quad, quad_faces), torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(4, 3)
    )
    assert torch.autograd.gradcheck(
        lambda v: vertex_normals(v, quad_faces), (quad.clone().requires_grad_(True),)
    )


# ------------------------------------------------------------------------------------------ renderer


def test_render_mesh_known_colours():
    verts, faces, cams = quad_scene()
    colours = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64).expand(4, 3)
    out = render_mesh(verts, faces, cams, vertex_colors=colours, background=(0.0, 0.0, 1.0))
    assert out.rgb.shape == (1, 16, 16, 3) and out.alpha.shape == (1, 16, 16)
    assert out.depth.shape == (1, 16, 16) and out.normals.shape == (1, 16, 16, 3)
    inside = out.fragments.mask[0]
    torch.testing.assert_close(out.rgb[0][inside], torch.tensor([1.0, 0.0, 0.0], dtype=F64).expand(16, 3))
    torch.testing.assert_close(out.rgb[0][~inside], torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(240, 3))
    torch.testing.assert_close(out.depth, out.fragments.depth)
    torch.testing.assert_close(out.normals[0][inside], torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(16, 3))
    # Frontal light: lambert = ambient + diffuse.
    lit = render_mesh(verts, faces, cams, light=DirectionalLight((0.0, 0.0, 1.0), 0.25, 0.5))
    torch.testing.assert_close(lit.rgb[0][inside], torch.full((16, 3), 0.75, dtype=F64))


def test_render_mesh_min_shading_floors_the_sh_shading_only():
    """The quad faces +z; an SH light whose linear band points to -z shades it below zero (black after clipping):
    `min_shading` lifts it to the floor and leaves a brighter light's shading as it was."""
    verts, faces, cams = quad_scene()
    white = torch.ones(4, 3, dtype=F64)
    inside = render_mesh(verts, faces, cams, vertex_colors=white).fragments.mask[0]
    dark = torch.zeros(1, 9, dtype=F64)
    dark[0, 0], dark[0, 2] = 0.5, -3.0  # L_00 and L_10 (the z band, order of `sh_basis`)
    assert (render_mesh(verts, faces, cams, vertex_colors=white, sh_coeffs=dark).rgb[0][inside] < 0).all()
    floored = render_mesh(verts, faces, cams, vertex_colors=white, sh_coeffs=dark, min_shading=0.35)
    torch.testing.assert_close(floored.rgb[0][inside], torch.full((16, 3), 0.35, dtype=F64))
    bright = dark.clone()
    bright[0, 2] = 3.0
    plain = render_mesh(verts, faces, cams, vertex_colors=white, sh_coeffs=bright)
    assert (plain.rgb[0][inside] > 0.35).all()
    torch.testing.assert_close(render_mesh(verts, faces, cams, vertex_colors=white, sh_coeffs=bright,
                                           min_shading=0.35).rgb, plain.rgb)  # fmt: skip


def test_render_mesh_depth_limit_draws_only_nearer_pixels():
    verts, faces, cams = quad_scene()
    colours = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64).expand(4, 3)
    full = render_mesh(verts, faces, cams, vertex_colors=colours, background=(0.0, 0.0, 1.0))
    inside = full.fragments.mask
    # Nearer than the limit on the left half only: drawn there, background (and no fragment) elsewhere.
    limit = torch.where(torch.arange(16)[None, None, :] < 8, full.depth + 1.0, full.depth).expand(1, 16, 16)
    part = render_mesh(verts, faces, cams, vertex_colors=colours, background=(0.0, 0.0, 1.0), depth_limit=limit)
    left = inside & (torch.arange(16)[None, None, :] < 8)
    assert left.any() and (inside & ~left).any()
    assert torch.equal(part.fragments.mask, left)
    torch.testing.assert_close(part.rgb[left], full.rgb[left])
    torch.testing.assert_close(part.rgb[~left], torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(int((~left).sum()), 3))
    no_limit = render_mesh(verts, faces, cams, vertex_colors=colours, depth_limit=torch.full((1, 16, 16), float("inf")))
    torch.testing.assert_close(no_limit.rgb, render_mesh(verts, faces, cams, vertex_colors=colours).rgb)
    with pytest.raises(ValueError, match="depth_limit"):
        render_mesh(verts, faces, cams, vertex_colors=colours, depth_limit=torch.zeros(16, 16))


def test_render_mesh_udim_with_separate_uv_topology():
    verts, faces, cams = quad_scene()
    # Six UV corners: the first face reads tile 0 (red), the second tile 1 (green).
    uv = torch.tensor([[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [1.2, 0.2], [1.8, 0.8], [1.2, 0.8]], dtype=F64)
    uv_faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    red = torch.zeros(3, 4, 4, dtype=F64)
    red[0] = 1
    green = torch.zeros(3, 4, 4, dtype=F64)
    green[1] = 1
    out = render_mesh(verts, faces, cams, uv=uv, uv_faces=uv_faces, texture=[red, green])
    tri = out.fragments.tri_id[0]
    torch.testing.assert_close(
        out.rgb[0][tri == 0], torch.tensor([1.0, 0.0, 0.0], dtype=F64).expand(int((tri == 0).sum()), 3)
    )
    torch.testing.assert_close(
        out.rgb[0][tri == 1], torch.tensor([0.0, 1.0, 0.0], dtype=F64).expand(int((tri == 1).sum()), 3)
    )
    with pytest.raises(ValueError, match="uv"):
        render_mesh(verts, faces, cams, texture=[red, green])
    with pytest.raises(ValueError, match="not both"):
        render_mesh(verts, faces, cams, uv=uv, uv_faces=uv_faces, texture=red[None], vertex_colors=verts)
    with pytest.raises(ValueError, match="channels"):
        render_mesh(verts, faces, cams, uv=uv, uv_faces=uv_faces, texture=[red, green[:2]])
    per_corner = render_mesh(verts, faces, cams, uv=uv[uv_faces], texture=[red, green])
    torch.testing.assert_close(per_corner.rgb, out.rgb)
    # Listed tiles may have different resolutions; a 5-D tensor of tiles works the same.
    small_green = green[:, :2, :2]
    mixed = render_mesh(verts, faces, cams, uv=uv, uv_faces=uv_faces, texture=[red, small_green])
    torch.testing.assert_close(mixed.rgb, out.rgb)
    stacked = render_mesh(
        verts, faces, cams, uv=uv, uv_faces=uv_faces, texture=torch.stack([red, green])[None]
    )
    torch.testing.assert_close(stacked.rgb, out.rgb)
    with pytest.raises(ValueError, match="uv has 6 rows"):
        render_mesh(verts, faces, cams, uv=uv, texture=[red, green])


def test_render_mesh_gradients_reach_verts_texture_and_light():
    verts, faces = uv_sphere(n_lon=10, n_lat=6, dtype=torch.float32)
    cams = orbit_cameras([0.0, 45.0, -45.0], 3.5, focal_px=24.0, width=24, height=24)
    uv = torch.stack([0.5 + 0.4 * verts[:, 0], 0.5 + 0.4 * verts[:, 1]], -1)
    v = verts.clone().requires_grad_(True)
    tex = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    sh = torch.zeros(1, 9, 3)
    sh[:, 0] = 3.0
    sh[:, 3] = 1.0
    sh.requires_grad_(True)
    out = render_mesh(v, faces, cams, uv=uv, texture=tex, sh_coeffs=sh)
    assert out.rgb.shape == (3, 24, 24, 3)
    target = torch.rand(3, 24, 24, 3, generator=torch.Generator().manual_seed(1))
    ((out.rgb - target) ** 2).mean().backward()
    for name, tensor in (("verts", v), ("texture", tex), ("sh_coeffs", sh)):
        assert tensor.grad is not None and bool(torch.isfinite(tensor.grad).all()), name
        assert float(tensor.grad.abs().sum()) > 0, name
    # In float64, the vertex gradient matches a central finite difference (small step: coverage fixed).
    verts64, tex64, sh64, target64 = (
        verts.double(),
        tex.detach().double(),
        sh.detach().double(),
        target.double(),
    )
    uv64, cams64 = uv.double(), cams.to(dtype=F64)

    def loss(p):
        out = render_mesh(p, faces, cams64, uv=uv64, texture=tex64, sh_coeffs=sh64)
        return ((out.rgb - target64) ** 2).mean(), out.fragments.tri_id

    v64 = verts64.clone().requires_grad_(True)
    value, tri_id = loss(v64)
    value.backward()
    direction = torch.randn(verts.shape, generator=torch.Generator().manual_seed(4), dtype=F64) * 1e-4
    with torch.no_grad():
        plus, tri_plus = loss(verts64 + direction)
        minus, tri_minus = loss(verts64 - direction)
    assert torch.equal(tri_plus, tri_id) and torch.equal(tri_minus, tri_id)
    fd = float(plus - minus) / 2
    analytic = float((v64.grad * direction).sum())
    assert abs(fd - analytic) <= 1e-2 * abs(analytic)  # bilinear texture kinks limit the FD accuracy


def test_render_mesh_per_view_parameters_match_single_views():
    verts, faces = uv_sphere(n_lon=10, n_lat=6)
    cams = orbit_cameras([0.0, 70.0], 3.5, focal_px=16.0, width=16, height=16, dtype=F64)
    gen = torch.Generator().manual_seed(2)
    sh = torch.randn(2, 9, 3, generator=gen, dtype=F64)
    colours = torch.rand(2, verts.shape[0], 3, generator=gen, dtype=F64)
    background = torch.rand(2, 16, 16, 3, generator=gen, dtype=F64)
    both = render_mesh(verts, faces, cams, vertex_colors=colours, sh_coeffs=sh, background=background)
    directions = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=F64)
    lit = render_mesh(verts, faces, cams, light=DirectionalLight(directions))
    for b in range(2):
        one = render_mesh(
            verts,
            faces,
            cams[b],
            vertex_colors=colours[b],
            sh_coeffs=sh[b : b + 1],
            background=background[b : b + 1],
        )
        torch.testing.assert_close(both.rgb[b], one.rgb[0])
        one_lit = render_mesh(verts, faces, cams[b], light=DirectionalLight(directions[b]))
        torch.testing.assert_close(lit.rgb[b], one_lit.rgb[0])
    # Per-view attributes in interpolate select the right view.
    attr = torch.stack([torch.zeros(verts.shape[0], 1, dtype=F64), torch.ones(verts.shape[0], 1, dtype=F64)])
    out = interpolate(attr, faces, both.fragments)
    torch.testing.assert_close(
        out[1][both.fragments.mask[1]], torch.ones(int(both.fragments.mask[1].sum()), 1, dtype=F64)
    )
    assert float(out[0].abs().max()) == 0.0
    with pytest.raises(ValueError, match="background"):
        render_mesh(verts, faces, cams, background=(1.0, 1.0))
    with pytest.raises(ValueError, match="sh_coeffs"):
        render_mesh(verts, faces, cams, sh_coeffs=torch.zeros(3, 9, dtype=F64))
    with pytest.raises(ValueError, match="light.direction"):
        render_mesh(verts, faces, cams, light=DirectionalLight(torch.zeros(3, 3, dtype=F64)))
