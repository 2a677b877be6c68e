"""The mouth's textures: teeth shaded tooth by tooth, gums, tongue, and the cavity darkening with depth.

ICT's teeth are 32 separate shells (one per tooth) in UV tile 3; gums and tongue one shell in tile 2; the
mouth socket is part of the back-of-head tile 1. Everything is procedural from the neutral geometry
(which tooth a texel belongs to, where on the tooth it lies, how deep in the mouth), with the teeth's
colour taken from the photo when the photo shows them (`photo_teeth_colour`). No image is copied from
anywhere: the only inputs are the head model and the photo.

Depth darkening is baked on the neutral head, for viewers that light the textures themselves (the GLB): light
enters the mouth through the lips, so the incisors and the lips' inner gums catch it and the molars, the back
of the tongue and the socket sit in shadow. sie3d's own renders add what depends on the pose: dimming as the
lips close (`sie3d.previews.mouth_light`) and the depth behind the lips (`sie3d.render.occlusion.MouthInterior`,
over `mouth_interior`'s vertices).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from sie3d.face.observation import FaceObservation
from sie3d.head.model import HeadModel

TEETH = (0.66, 0.63, 0.57)  # linear enamel: smiles in photos show teeth nearly white
GUMS = (0.32, 0.10, 0.10)
TONGUE = (0.26, 0.085, 0.08)
MOUTH_SOCKET = (0.20, 0.06, 0.06)
INNER_MOUTH = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)


def _teeth_components(head: HeadModel) -> np.ndarray:
    """(V,) int: the tooth (connected part of M_Teeth) of each vertex, -1 elsewhere."""
    from sie3d.head.texture import material_parts

    return material_parts(head, "M_Teeth")


@lru_cache(maxsize=2)
def mouth_interior(head: HeadModel) -> np.ndarray:
    """(V,) bool: the inside of the mouth -- the teeth, gums and tongue, and the mouth socket -- whose textures
    are procedural (no shading of the photo in them)."""
    from sie3d.assets.ict import REGIONS

    topo = head.topology
    inside = np.zeros(len(head.neutral), bool)
    inside[topo.faces[topo.faces_of("M_Teeth", "M_GumsTongue")]] = True
    first, end = REGIONS["mouth_socket"][:2]
    inside[first:end] = True
    return inside


def _depth_light(depth: np.ndarray, falloff: float) -> np.ndarray:
    """(N,) light reaching points at head-space z `depth` (+z toward the lips): 1 at the front, falling off."""
    front, back = np.percentile(depth, 98), np.percentile(depth, 2)
    return np.clip((depth - back) / max(front - back, 1e-6), 0.0, 1.0) ** falloff


def teeth_tile(head: HeadModel, size: int, colour: np.ndarray | tuple[float, float, float] = TEETH,
               seed: int = 0) -> np.ndarray:
    """(size, size, 3) linear albedo of the teeth tile: per tooth a slightly different shade, a warmer,
    darker neck at the gum line, a greyer translucent biting edge, dark gaps between neighbours, and the
    light falling off toward the molars."""
    from sie3d.head.texture import _interpolate, material_texels

    tri, (rows, cols), bary = material_texels(head, "M_Teeth", 3, size)
    neutral = head.neutral.numpy()
    corners = head.topology.faces[tri]
    points = _interpolate(neutral, corners, bary)
    tooth = _teeth_components(head)[corners[:, 0]]
    count = tooth.max() + 1
    rng = np.random.default_rng(seed)
    shade = 1.0 + rng.normal(0.0, 0.05, count)  # enamel varies from tooth to tooth
    warmth = rng.normal(0.0, 0.03, count)
    verts = _teeth_components(head)
    low = np.zeros((count, 3))
    high = np.zeros((count, 3))
    for k in range(count):
        p = neutral[verts == k]
        low[k], high[k] = p.min(0), p.max(0)
    centre_y = np.median((low[:, 1] + high[:, 1]) / 2)
    upper = ((low[:, 1] + high[:, 1]) / 2 > centre_y)[tooth]
    extent = np.maximum(high - low, 1e-6)[tooth]
    rel = (points - low[tooth]) / extent  # 0..1 within the tooth's box
    # 0 at the biting edge, 1 at the neck (the gum line): upper teeth hang down, lower ones stand up.
    neck = np.where(upper, rel[:, 1], 1 - rel[:, 1])
    # Across the tooth (in x for the front teeth, in z for the side teeth): dark at the gaps.
    across_x = np.abs(rel[:, 0] - 0.5) * 2
    across_z = np.abs(rel[:, 2] - 0.5) * 2
    front = (extent[:, 0] >= extent[:, 2])
    across = np.where(front, across_x, across_z)
    albedo = np.asarray(colour, np.float64)[None] * shade[tooth, None]
    yellow = np.array([1.0, 0.93, 0.78])
    albedo = albedo * (1 + (yellow - 1) * np.clip(neck - 0.45, 0, 1)[:, None] * 1.4)  # warmer, darker neck
    albedo = albedo * (1 - 0.2 * np.clip(neck - 0.7, 0, 1)[:, None] / 0.3)
    edge = np.clip(0.15 - neck, 0, 0.15)[:, None] / 0.15  # the biting edge: greyer, slightly translucent
    albedo = albedo * (1 - 0.2 * edge) + np.array([0.8, 0.82, 0.88]) * 0.2 * edge * albedo.mean(1, keepdims=True)
    albedo = albedo * (1 + warmth[tooth, None] * np.array([1.0, 0.0, -1.0]))
    albedo = albedo * (1 - 0.3 * np.clip(across - 0.7, 0, 0.3)[:, None] / 0.3)  # interproximal gaps
    albedo = albedo * (0.2 + 0.8 * _depth_light(points[:, 2], 1.3))[:, None]
    image = np.broadcast_to(np.asarray(colour, np.float32) * 0.12, (size, size, 3)).copy()
    image[rows, cols] = albedo
    return image.astype(np.float32)


def gums_tongue_tile(head: HeadModel, size: int, seed: int = 0) -> np.ndarray:
    """(size, size, 3) linear albedo of gums and tongue: gum pink within a few millimetres of the teeth,
    the tongue's duller red elsewhere with a faint papillae grain, both darkening deep in the mouth. The
    same for everyone (it depends on the head model only): computed once, kept in the cache folder beside
    the head model (a new process reads it instead of 0.5-0.9 s of work), a fresh copy each call."""
    return _gums_tongue_tile(head, size, seed).copy()


GUMS_CACHE_VERSION = 1  # bump when `_gums_tongue_albedo` changes what it computes


@lru_cache(maxsize=2)
def _gums_tongue_tile(head: HeadModel, size: int, seed: int) -> np.ndarray:
    from sie3d.assets.registry import cached_arrays
    from sie3d.head.texture import material_texels

    path = gums_tongue_cache_path(head, size, seed)
    albedo = cached_arrays(path, lambda: {"albedo": _gums_tongue_albedo(head, size, seed)})["albedo"]
    _, (rows, cols), _ = material_texels(head, "M_GumsTongue", 2, size)
    image = np.broadcast_to(np.asarray(TONGUE, np.float32) * 0.08, (size, size, 3)).copy()
    image[rows, cols] = albedo
    return image


def gums_tongue_cache_path(head: HeadModel, size: int, seed: int = 0) -> Path:
    """The cache file of `gums_tongue_tile` (named by the head's layout and shape, the size, seed and colours)."""
    from sie3d.head.texture import head_cache_path

    colours = "_".join(f"{c:g}" for c in (*GUMS, *TONGUE))
    return head_cache_path(head, f"gums_tongue_v{GUMS_CACHE_VERSION}", f"{size}_{seed}_{colours}", head.neutral.numpy())


def _gums_tongue_albedo(head: HeadModel, size: int, seed: int) -> np.ndarray:
    """(N, 3) float32 linear albedo of the texels `material_texels(head, "M_GumsTongue", 2, size)` lists."""
    from scipy.spatial import cKDTree

    from sie3d.head.texture import _interpolate, material_texels

    tri, _, bary = material_texels(head, "M_GumsTongue", 2, size)
    neutral = head.neutral.numpy()
    points = _interpolate(neutral, head.topology.faces[tri], bary)
    teeth = neutral[_teeth_components(head) >= 0]
    distance, _ = cKDTree(teeth).query(points)
    gum = np.clip(1.0 - (distance - 0.15) / 0.25, 0.0, 1.0)[:, None]
    albedo = np.asarray(GUMS) * gum + np.asarray(TONGUE) * (1 - gum)
    grain = np.random.default_rng(seed).normal(0.0, 0.06, len(points))[:, None]
    albedo = albedo * (1 + grain * (1 - gum))
    albedo = albedo * (0.06 + 0.94 * _depth_light(points[:, 2], 3.0))[:, None]
    return albedo.astype(np.float32)


def socket_colours(points_z: np.ndarray) -> np.ndarray:
    """(N, 3) linear albedo of mouth-socket texels at head-space z `points_z` (N,): dark red, black deep in."""
    return np.asarray(MOUTH_SOCKET)[None] * (0.1 + 0.9 * _depth_light(points_z, 2.0))[:, None]


def photo_teeth_colour(photo_linear: np.ndarray, obs: FaceObservation) -> np.ndarray | None:
    """(3,) linear teeth albedo from the photo when its mouth is open on visible teeth, else None: the
    bright, nearly colourless pixels inside the inner lip contour (teeth, not lips, tongue or the dark
    cavity), their median colour brought to an enamel's range."""
    from sie3d.head.texture import polygon_mask

    lm = obs.landmarks_px[:, :2]
    contour = lm[list(INNER_MOUTH)]
    width = np.linalg.norm(lm[61] - lm[291])
    opening = np.linalg.norm(lm[13] - lm[14]) / max(width, 1e-6)
    if opening < 0.06:
        return None
    height, image_width = photo_linear.shape[:2]
    x0, y0 = np.maximum(np.floor(contour.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(contour.max(0)).astype(int) + 1, [image_width, height])
    if x1 - x0 < 4 or y1 - y0 < 3:
        return None
    mask = polygon_mask(contour - [x0, y0], (x1 - x0, y1 - y0), shrink=0.08)
    pixels = photo_linear[y0:y1, x0:x1][mask]
    if len(pixels) < 20:
        return None
    lum = pixels.mean(1)
    saturation = (pixels.max(1) - pixels.min(1)) / np.maximum(pixels.max(1), 1e-5)
    teeth = pixels[(lum >= np.percentile(lum, 60)) & (saturation < 0.45)]
    if len(teeth) < 0.08 * len(pixels):
        return None
    colour = np.median(teeth, axis=0)
    level = float(colour.mean())
    colour = (0.6 * colour + 0.4 * level) / max(level, 1e-5) * np.clip(level, 0.40, 0.62)
    # Enamel is never bluer than it is red.
    colour[2] = min(colour[2], colour[0])
    return np.clip(colour, 0.0, 1.0).astype(np.float32)
