"""Expression wrinkles: per-blendshape fold maps in the face tile's UV space, derived from the ICT mesh.

Skin folds across the direction it is squeezed in. For every blendshape named in the anatomy table
(`FOLDS`), each triangle of ICT's face is compared between the neutral head and the head wearing that
shape at full strength: the smallest principal stretch of the triangle (its compression, 1 - stretch)
and the direction it is squeezed along, both in UV. Where the skin is compressed by more than
`WrinkleConfig.onset` the shape gets a *height map* (cm, never positive: only creases): parallel lines
running across the squeeze direction (forehead lines with raised brows, vertical glabellar furrows with
lowered brows, crow's feet, lines on the nose bridge and lips), one smooth fold following the compressed
band (nasolabial folds, dimples, marionette lines) or small pits (chin dimpling). Which shapes fold, and
how deep and how far apart their lines are, is anatomy (`FOLDS`); where and in which direction is the
mesh's own deformation.

`WrinkleMaps.detail(coefficients)` sums the height maps weighted by the coefficients and returns what the
renderer needs (`sie3d.render.render_mesh`'s ``detail``): the height's slopes along u and v (cm per cm,
in the surface's tangent frame) and a cavity term (crease occlusion). It is linear in the coefficients,
so it is exactly zero at zero expression and differentiable in them.

Maps are computed once per head layout and size (about 1 s) and kept in the cache folder beside the head.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
import torch
from torch import Tensor

from sie3d.head.model import HeadModel
from sie3d.head.names import ICT_NAMES
from sie3d.head.texture import material_texels

FACE_TILE = 0  # the UV tile of M_Face, the only skin that gets wrinkles
WRINKLES_CACHE_VERSION = 1  # bump when the maps' recipe changes


@dataclass(frozen=True)
class Fold:
    """How the skin folds when one of `shapes` acts (anatomy, chosen by hand and by eye; never fitted).

    kind: ``"lines"`` parallel creases across the squeeze, ``wavelength_cm`` apart; ``"fold"`` one smooth
    crease along the crest of the compressed band, about ``wavelength_cm`` wide; ``"pits"`` small round
    dimples about ``wavelength_cm`` apart.
    depth_cm: crease depth where the skin is compressed by `WrinkleConfig.full` or more, coefficient 1.
    """

    shapes: tuple[str, ...]
    kind: str
    wavelength_cm: float
    depth_cm: float
    note: str = ""
    onset: float | None = None  # compression where the fold begins / is full; None: `WrinkleConfig`'s
    full: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("lines", "fold", "pits"):
            raise ValueError(f"fold kind must be lines, fold or pits, not {self.kind!r}")
        unknown = set(self.shapes) - set(ICT_NAMES)
        if unknown:
            raise ValueError(f"unknown ICT shapes in a fold: {sorted(unknown)}")


def _sides(shape: str) -> tuple[str, str]:
    return f"{shape}_L", f"{shape}_R"


# Action units and the folds they make (Ekman, Friesen & Hager, FACS manual 2002; dynamic wrinkles as
# described for botulinum-toxin treatment: forehead lines 1-1.5 cm apart, 1-2 glabellar furrows per side,
# crow's feet a few mm apart). Depths are of a clear, not exaggerated, adult crease.
FOLDS: tuple[Fold, ...] = (
    Fold(_sides("browInnerUp"), "lines", 1.1, 0.08, "AU1 frontalis (medial): horizontal forehead lines"),
    Fold(_sides("browOuterUp"), "lines", 1.1, 0.08, "AU2 frontalis (lateral): horizontal forehead lines"),
    # only the strongly squeezed skin between and under the brows: 1-2 furrows a side, not a comb over the brow
    Fold(_sides("browDown"), "lines", 0.7, 0.13, "AU4 corrugator/procerus: vertical glabellar furrows", 0.1, 0.25),
    Fold(_sides("cheekSquint"), "lines", 0.35, 0.05, "AU6 orbicularis oculi: crow's feet, lower-lid lines"),
    Fold(_sides("eyeSquint"), "lines", 0.35, 0.025, "AU7 lid tightener: fine lines at the outer corner"),
    Fold(_sides("noseSneer"), "lines", 0.3, 0.07, "AU9 levator labii alaeque nasi: nose-bridge wrinkles"),
    Fold(_sides("mouthSmile"), "fold", 0.6, 0.12, "AU12 zygomaticus major: deeper nasolabial folds"),
    Fold(_sides("mouthUpperUp"), "fold", 0.6, 0.07, "AU10 levator labii superioris: nasolabial folds"),
    Fold(_sides("mouthDimple"), "fold", 0.5, 0.05, "AU14 buccinator: dimple at the lip corner"),
    Fold(_sides("mouthFrown"), "fold", 0.6, 0.04, "AU15 depressor anguli oris: marionette lines"),
    Fold(("mouthShrugLower",), "pits", 0.4, 0.035, "AU17 mentalis: chin dimpling (peau d'orange)"),
    Fold(_sides("mouthPress"), "lines", 0.25, 0.02, "AU24 lip presser: fine vertical lip lines"),
    Fold(("mouthPucker",), "lines", 0.3, 0.03, "AU18 lip pucker: perioral lines"),
)  # fmt: skip


@dataclass(frozen=True)
class WrinkleConfig:
    """How the maps are made: the anatomy table, resolution and the compression thresholds."""

    folds: tuple[Fold, ...] = FOLDS
    size: int = 512  # texels per side of the face tile's maps
    onset: float = 0.04  # compression (1 - smallest stretch) below which skin shows no fold
    full: float = 0.15  # compression at which a fold reaches its full depth
    smoothing_cm: float = 0.2  # Gaussian smoothing of the compression field on the surface
    sharpness: float = 3.0  # lines: exponent of the raised-cosine profile (narrow creases, broad ridges)
    phase_noise: float = 0.35  # lines: irregularity of the creases' course, in periods
    occlusion_per_cm: float = 5.0  # cavity = this x crease depth; shading is multiplied by exp(-cavity)
    orientations: int = 12  # lines: direction bins of the stripe bank
    seed: int = 0

    def shapes(self) -> tuple[str, ...]:
        return tuple(s for fold in self.folds for s in fold.shapes)

    def digest(self) -> str:
        return hashlib.sha1(repr(self).encode()).hexdigest()[:12]


@dataclass(frozen=True, eq=False)
class WrinkleMaps:
    """Crease heights of the face tile per folding blendshape, and how to turn them into render detail.

    heights: (K, S, S) float32, cm, <= 0, at coefficient 1 (row 0 = top = v 1, as every tile here);
    shape_index: (K,) long, the ICT coefficient of each map; texel_cm: (S, S) float32, surface distance
    of one texel (cm); occlusion_per_cm: see `WrinkleConfig`.
    """

    heights: Tensor
    shape_index: Tensor
    texel_cm: Tensor
    occlusion_per_cm: float
    shape_names: tuple[str, ...] = field(default=())

    @property
    def size(self) -> int:
        return int(self.heights.shape[-1])

    def height(self, coefficients: Tensor) -> Tensor:
        """(53,) or (B, 53) ICT coefficients -> (B, S, S) crease height in cm (linear in the coefficients)."""
        coefficients = _batch(coefficients)
        weights = coefficients.index_select(1, self.shape_index).to(self.heights.dtype)  # (B, K)
        if weights.requires_grad:  # every map: the derivative in a coefficient at 0 is its map, not 0
            return torch.einsum("bk,khw->bhw", weights, self.heights)
        active = (weights != 0).any(0).nonzero().squeeze(1)  # without gradients, skip the idle maps
        return torch.einsum("bk,khw->bhw", weights.index_select(1, active), self.heights.index_select(0, active))

    def detail(self, coefficients: Tensor) -> Tensor:
        """(53,) or (B, 53) coefficients -> (B, 3, S, S): slope of the crease height along +u and +v
        (cm per cm of surface, tangent frame of the UV layout) and the cavity (>= 0). Linear in the
        coefficients: zero at zero expression, differentiable (also where a coefficient is 0)."""
        return detail_from_height(self.height(coefficients), self.texel_cm, self.occlusion_per_cm)

    def is_zero(self, coefficients: np.ndarray) -> bool:
        """True when `coefficients` (53,) drive no fold at all (the renderer can skip the detail)."""
        return not np.any(np.asarray(coefficients)[self.shape_index.numpy()] != 0)


def detail_from_height(height: Tensor, texel_cm: Tensor, occlusion_per_cm: float) -> Tensor:
    """(B, S, S) height (cm, row 0 = v 1) -> (B, 3, S, S) (dh/du, dh/dv in cm/cm, cavity); linear."""
    padded = torch.nn.functional.pad(height[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    d_col = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) / (2.0 * texel_cm)
    d_row = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) / (2.0 * texel_cm)
    return torch.stack([d_col, -d_row, -occlusion_per_cm * height], dim=1)  # rows grow downwards: v = -row


def normal_map_image(detail: Tensor) -> np.ndarray:
    """(3, S, S) or (1, 3, S, S) detail (`WrinkleMaps.detail`) -> (S, S, 3) uint8 tangent-space normal map
    in glTF's convention (x along +u, y along +v, z out; ``(n + 1) / 2 * 255``); flat where there is no
    fold. The cavity term has no place in a normal map and is left out."""
    slopes = detail.detach().reshape(-1, *detail.shape[-3:])[0, :2].to(torch.float64)
    normal = torch.nn.functional.normalize(torch.cat([-slopes, torch.ones_like(slopes[:1])]), dim=0)
    return ((normal.permute(1, 2, 0).numpy() + 1.0) * 127.5 + 0.5).clip(0, 255).astype(np.uint8)


def _batch(coefficients: Tensor) -> Tensor:
    coefficients = torch.as_tensor(coefficients)
    if coefficients.ndim == 1:
        coefficients = coefficients[None]
    if coefficients.ndim != 2 or coefficients.shape[1] != len(ICT_NAMES):
        raise ValueError(f"expected ({len(ICT_NAMES)},) or (B, {len(ICT_NAMES)}) coefficients, "
                         f"got {tuple(coefficients.shape)}")  # fmt: skip
    return coefficients


# -- building the maps ---------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def wrinkle_maps(head: HeadModel, config: WrinkleConfig = WrinkleConfig()) -> WrinkleMaps:
    """The head's wrinkle maps for `config`: read from the cache folder, else built (about 1 s) and kept."""
    from sie3d.assets.registry import cached_arrays
    from sie3d.head.texture import head_cache_path

    def build() -> dict[str, np.ndarray]:
        heights, texel_cm = build_heights(head, config)
        return {"heights": heights.astype(np.float16), "texel_cm": texel_cm}  # halves: the maps' detail fits

    path = head_cache_path(head, f"wrinkles_v{WRINKLES_CACHE_VERSION}", config.digest(), head.topology.faces,
                           head.neutral.numpy(), head.expression_basis.numpy())  # fmt: skip
    arrays = cached_arrays(path, build)
    names = config.shapes()
    heights, texel_cm = (torch.from_numpy(arrays[k].astype(np.float32)) for k in ("heights", "texel_cm"))
    return WrinkleMaps(heights, torch.tensor([ICT_NAMES.index(n) for n in names]), texel_cm, config.occlusion_per_cm,
                       names)  # fmt: skip


def triangle_compression(head: HeadModel, triangles: np.ndarray, shapes: tuple[str, ...]
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """How each of `shapes` at coefficient 1 squeezes each of `triangles` (ids into the head's faces).

    Returns (compression (K, N): 1 - smallest principal stretch, clipped at 0; direction (K, N, 2): unit
    UV direction of that stretch; scale (N,): cm of surface per UV unit)."""
    topo = head.topology
    neutral = head.neutral.numpy().astype(np.float64)
    deltas = head.expression_deltas().numpy().astype(np.float64)
    corners, uv = topo.faces[triangles], topo.uvs[topo.uv_faces[triangles]].astype(np.float64)
    d_uv = np.stack([uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]], -1)  # (N, 2, 2): edge vectors as columns
    det = np.linalg.det(d_uv)
    ok = np.abs(det) > 1e-12
    inverse = np.linalg.inv(np.where(ok[:, None, None], d_uv, np.eye(2)))

    def jacobian(verts: np.ndarray) -> np.ndarray:  # (N, 3, 2): d position / d uv
        p = verts[corners]
        return np.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]], -1) @ inverse

    j0 = jacobian(neutral)
    g0 = np.swapaxes(j0, 1, 2) @ j0  # (N, 2, 2) metric of the neutral surface in UV
    g0 = g0 + np.eye(2) * 1e-9
    lower = np.linalg.cholesky(g0)
    lower_inv = np.linalg.inv(lower)
    p0 = neutral[corners]
    area_3d = 0.5 * np.linalg.norm(np.cross(p0[:, 1] - p0[:, 0], p0[:, 2] - p0[:, 0]), axis=-1)
    scale = np.sqrt(area_3d / np.maximum(0.5 * np.abs(det), 1e-12))
    compression = np.zeros((len(shapes), len(triangles)))
    direction = np.zeros((len(shapes), len(triangles), 2))
    for k, name in enumerate(shapes):
        j1 = jacobian(neutral + deltas[ICT_NAMES.index(name)])
        g1 = np.swapaxes(j1, 1, 2) @ j1
        # stretches^2 = eigenvalues of G1 relative to G0: symmetric form L^-1 G1 L^-T
        values, vectors = np.linalg.eigh(lower_inv @ g1 @ np.swapaxes(lower_inv, 1, 2))
        compression[k] = np.where(ok, np.clip(1.0 - np.sqrt(np.maximum(values[:, 0], 0.0)), 0.0, 1.0), 0.0)
        uv_dir = np.einsum("nji,nj->ni", lower_inv, vectors[:, :, 0])  # L^-T v: back to UV coordinates
        direction[k] = uv_dir / np.maximum(np.linalg.norm(uv_dir, axis=1, keepdims=True), 1e-12)
    return compression, direction, scale


def build_heights(head: HeadModel, config: WrinkleConfig) -> tuple[np.ndarray, np.ndarray]:
    """(K, S, S) crease heights (cm, <= 0) for `config.shapes()` and (S, S) cm per texel of the face tile."""
    size = config.size
    triangles = head.topology.faces_of("M_Face")
    shapes = config.shapes()
    compression, direction, scale = triangle_compression(head, triangles, shapes)
    local = np.full(len(head.topology.faces), -1, np.int64)
    local[triangles] = np.arange(len(triangles))
    tri, (rows, cols), _ = material_texels(head, "M_Face", FACE_TILE, size)
    texel_tri = local[tri]
    covered = np.zeros((size, size), np.float32)
    covered[rows, cols] = 1.0
    cm_per_uv = float(np.median(scale))
    texel_cm = np.full((size, size), cm_per_uv / size, np.float32)
    texel_cm[rows, cols] = scale[texel_tri] / size
    sigma = config.smoothing_cm / (cm_per_uv / size)

    def smooth(values: np.ndarray) -> np.ndarray:  # normalised convolution over the covered texels
        image = np.zeros((size, size), np.float32)
        image[rows, cols] = values
        blurred = cv2.GaussianBlur(image, (0, 0), sigma)
        weight = cv2.GaussianBlur(covered, (0, 0), sigma)
        return np.where(covered > 0, blurred / np.maximum(weight, 1e-6), 0.0).astype(np.float32)

    # texel positions in cm, origin on the face's midline (u = 0.5) so left and right mirror each other
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    x_cm, y_cm = (x + 0.5 - size / 2) * cm_per_uv / size, (size / 2 - y - 0.5) * cm_per_uv / size
    rng = np.random.default_rng(config.seed)
    noise = _symmetric_noise(rng, size, 2.0 / (cm_per_uv / size))  # ~2 cm features, (S, S), unit spread
    amplitude_noise = _symmetric_noise(rng, size, 1.2 / (cm_per_uv / size))
    heights = np.zeros((len(shapes), size, size), np.float32)
    k = 0
    for fold in config.folds:
        for _ in fold.shapes:
            m = smooth(compression[k][texel_tri])
            onset = config.onset if fold.onset is None else fold.onset
            full = config.full if fold.full is None else fold.full
            strength = np.clip((m - onset) / (full - onset), 0.0, 1.0)
            strength = strength * strength * (3.0 - 2.0 * strength)  # smoothstep: no hard edge at the onset
            if fold.kind == "fold":  # the crest of the compressed band, about wavelength_cm wide
                wide = cv2.GaussianBlur(m, (0, 0), fold.wavelength_cm / (cm_per_uv / size))
                profile = np.clip(2.0 * (m - wide) / np.maximum(m, 1e-6), 0.0, 1.0)
            elif fold.kind == "pits":
                bumps = np.clip(_symmetric_noise(rng, size, 0.5 * fold.wavelength_cm / (cm_per_uv / size)), 0.0, None)
                profile = np.clip(bumps / 1.5, 0.0, 1.0) ** 1.5  # pits where the noise is high
            else:
                du, dv = direction[k][texel_tri].T
                weighted = compression[k][texel_tri] * np.exp(2j * np.arctan2(dv, du))  # doubled angle: mod pi
                tensor = smooth(weighted.real) + 1j * smooth(weighted.imag)
                angle = 0.5 * np.angle(tensor)
                profile = _stripes(angle, x_cm, y_cm, fold.wavelength_cm, noise * config.phase_noise,
                                   config.sharpness, config.orientations)  # fmt: skip
                profile = profile * np.clip(0.75 + 0.5 * amplitude_noise, 0.2, 1.0)  # creases fade in and out
            heights[k] = -fold.depth_cm * strength * profile * covered
            k += 1
    return heights, texel_cm


def _stripes(angle: np.ndarray, x_cm: np.ndarray, y_cm: np.ndarray, wavelength: float, phase: np.ndarray,
             sharpness: float, bins: int) -> np.ndarray:
    """(S, S) in [0, 1]: narrow creases (1 in the crease) running across the local squeeze direction
    `angle` (radians in UV, mod pi), `wavelength` cm apart, from a bank of straight stripe patterns."""
    total = np.zeros_like(angle)
    weights = np.zeros_like(angle)
    for j in range(bins):
        theta = np.pi * j / bins
        weight = np.clip(np.cos(2.0 * (angle - theta)), 0.0, None) ** 8
        along = x_cm * np.cos(theta) + y_cm * np.sin(theta)
        total += weight * (0.5 + 0.5 * np.cos(2.0 * np.pi * (along / wavelength + phase))) ** sharpness
        weights += weight
    return (total / np.maximum(weights, 1e-6)).astype(np.float32)


def _symmetric_noise(rng: np.random.Generator, size: int, feature_texels: float) -> np.ndarray:
    """(S, S) smooth noise of unit standard deviation, mirror-symmetric about the vertical midline."""
    white = rng.standard_normal((size, size)).astype(np.float32)
    white = white + white[:, ::-1]
    smooth = cv2.GaussianBlur(white, (0, 0), max(feature_texels / 2.0, 0.5))
    return (smooth - smooth.mean()) / max(float(smooth.std()), 1e-8)
