"""Photo -> UV textures for the fitted head (ICT's UV layout), with the photo's lighting removed.

Tiles (UDIM along u, each its own image): 0 face skin (from the photo), 1 back of the head, neck, mouth
socket and eye sockets, 2 gums and tongue, 3 teeth, 6 eyelashes (RGBA: alpha-tested cards, when
`TextureConfig.lashes`), and an extra tile 7 that sie3d adds for the eyeballs (ICT lays the eyes over the
face tile's UV square; a tile of their own lets the face and the eyes carry different images).

The face tile is sampled from the photo through the *expressive* fit (so the rest pose shows the
person's neutral face), only where the texel is visible, faces the camera and lies inside MediaPipe's
face oval (never hair or background) and outside the eye and mouth openings. Texels the photo does not
see are filled from their left/right mirror (ICT's face UVs are exactly symmetric: u' = 1 - u), then
by a smooth skin-tone extrapolation, blended without seams. The photo's low-order lighting is
estimated from the fitted normals (9 spherical-harmonic coefficients per channel, assuming a uniform
skin albedo) and divided out, so the albedo can be re-lit; skin in shadow is redder than lit skin, so what the
division brightens takes the lit skin's chromaticity in proportion (`SHADOW_CHROMA_GAIN`). Eyes come from
`sie3d.head.eyes`, teeth, gums, tongue and the mouth socket from `sie3d.head.mouth`; `TextureConfig` chooses them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from sie3d.assets.registry import cached_arrays
from sie3d.face.observation import FaceObservation
from sie3d.head import eyes as eye_textures
from sie3d.head import mouth as mouth_textures
from sie3d.head.fit import FACE_OVAL, LEFT_EYE_OPENING, RIGHT_EYE_OPENING, HeadFit
from sie3d.head.model import HeadModel
from sie3d.render import Cameras, rasterize, sh_shading, vertex_normals

log = logging.getLogger(__name__)

EYE_TILE = 7
LASH_TILE = 6
EYE_SHADE = 8  # not a UDIM tile: the RGBA texture of the eye-occlusion shell (UVs in tile 0's square)
# Unreal-specific helper shells, and the eyelash cards: the renderer draws those in a pass of their own,
# alpha-tested against tile 6's alpha (`sie3d.previews.TexturedHead`), and only when the textures have it
# (opaque, the cards read as a thick black band around the eyes).
HIDDEN_MATERIALS = ("M_EyeOcclusion", "M_EyeBlend", "M_LacrimalFluid", "M_EyeLashes")
# MediaPipe's contour of the mouth opening (the eyes': `sie3d.head.fit`), whose pixels are not skin.
MOUTH_OPENING = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
# MediaPipe's outlines of the lips and brows, whose colours are their own (`SHADOW_CHROMA_GAIN` leaves them).
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)  # upper edge, then lower
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
# Linear-RGB albedos of the generic materials (`TextureConfig(eyes="procedural", mouth="generic")`).
TEETH = (0.62, 0.58, 0.50)  # a bright white reads as a gap between parted lips
GUMS = (0.34, 0.11, 0.12)  # in shadow under the palate even where near the lips
MOUTH_SOCKET = (0.30, 0.09, 0.09)
EYE_SOCKET = (0.10, 0.06, 0.05)
SCLERA = (0.50, 0.46, 0.43)  # linear; photographed sclera is off-white and in the lids' shade
PUPIL = (0.01, 0.01, 0.01)
IRIS_FRACTION_OF_MESH = 0.85  # see _eye_tile
PUPIL_FRACTION = 0.4
VISIBILITY_TOLERANCE_CM = 0.35
MIN_FACING = 0.2  # cosine between the surface normal and the direction to the camera
BRIGHTEST_LID = 1.25  # the brightest a lid texel's colour is lifted by the photo's shading, x the median skin
BRIGHTEST_SKIN = 1.5  # the same elsewhere on the face
# The darkest the photo's light is taken to be, x its median on the skin: the de-lighting divides by no less, and
# re-lighting with `HeadTextures.sh_lighting` (normalised to that median) shades no darker, so that it gives back
# the photo where the de-lighting clamped (the model's silhouettes: nose wings, lids, jaw).
DARKEST_SHADING = 0.35
SHADOW_CHROMA_GAIN = 2.0  # (> 1) a texel the de-lighting brightens this much takes all of the lit skin's chromaticity
LID_MOTION_CM = 0.02  # texels whose surface a blink moves this far are the lids'
LUMINANCE = np.array([0.2126, 0.7152, 0.0722], np.float32)  # of linear Rec. 709 / sRGB colours


@dataclass(frozen=True)
class TextureConfig:
    """How the parts of the head other than the skin are textured.

    eyes: "photo" -- iris detail and sclera colour from the photo, an anatomical iris with limbal ring,
        pupil and catch-light, and the lids' shade on the eyeball (ICT's eye-occlusion shell with
        `eyes.eye_shade_texture`) (`sie3d.head.eyes`); "procedural" -- the earlier flat iris (85% of ICT's
        iris mesh) in the colour sampled around MediaPipe's iris points.
    lashes: eyelash cards with an alpha texture (alpha-tested in renders, glTF alphaMode MASK).
    mouth: "detailed" -- teeth shaded tooth by tooth (colour from the photo when it shows teeth), gums,
        tongue and a socket darkening with depth (`sie3d.head.mouth`); "generic" -- flat materials.
    occlusion: renders darken what the expression hides more than the photo's own expression does (brows
        drawn over the lids, deepened folds; `sie3d.render.occlusion`). Render-time only: the textures are
        the same either way, and the exported meshes carry none (engines shade occlusion themselves).
    shadows: with the occlusion, renders also darken where the expression casts a shadow from a key light above
        the face that the photo's own expression did not (brows lowered over the lids). Render-time only.
    """

    eyes: Literal["photo", "procedural"] = "photo"
    lashes: bool = True
    mouth: Literal["detailed", "generic"] = "detailed"
    occlusion: bool = True
    shadows: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (("eyes", ("photo", "procedural")), ("mouth", ("detailed", "generic"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TextureConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")


# The textures before eyes, lashes and mouth came from `sie3d.head.eyes` / `sie3d.head.mouth`.
PLAIN_TEXTURES = TextureConfig(eyes="procedural", lashes=False, mouth="generic")


@dataclass(frozen=True)
class HeadTextures:
    """Albedo textures per tile (linear RGB in [0, 1], (S, S, 3) float32, row 0 = top = v 1) and the
    photo's estimated lighting."""

    tiles: dict[int, np.ndarray]
    sh_lighting: np.ndarray  # (9, 3) SH irradiance coefficients of the photo, in head space
    skin_albedo: np.ndarray  # (3,) median linear albedo of the seen skin
    coverage: float  # fraction of face-tile texels taken from the photo (directly or mirrored)

    def srgb_tiles(self) -> dict[int, np.ndarray]:
        """Tiles as 8-bit sRGB images (RGBA for the eyelash tile: its alpha stays linear), for files and viewers."""
        out = {}
        for k, v in self.tiles.items():
            rgb = to_srgb8(v[..., :3])
            out[k] = rgb if v.shape[2] == 3 else np.concatenate([rgb, (v[..., 3:] * 255 + 0.5).astype(np.uint8)], -1)
        return out


@dataclass(frozen=True)
class RenderLayout:
    """UVs and face mask for rendering/exporting with `HeadTextures` (eyes moved to tile 7)."""

    uvs: np.ndarray  # (T', 2)
    uv_faces: np.ndarray  # (F, 3)
    visible_faces: np.ndarray  # (F,) bool, False for the hidden helper shells


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


_SRGB8_TO_LINEAR = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)


def srgb8_to_linear(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB (a photo) -> float32 linear: `srgb_to_linear(rgb / 255)` looked up in a table of its 256
    values, the same numbers 30x faster (0.01 s instead of 0.3 s on a 2.5-megapixel photo)."""
    if rgb.dtype != np.uint8:
        return srgb_to_linear(rgb.astype(np.float32) / 255.0)
    return _SRGB8_TO_LINEAR[rgb]


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def to_srgb8(linear: np.ndarray) -> np.ndarray:
    return (linear_to_srgb(linear) * 255.0 + 0.5).astype(np.uint8)


@lru_cache(maxsize=4)
def render_layout(head: HeadModel) -> RenderLayout:
    """ICT's UVs, except the eyeballs: ICT overlaps several eye UV shells (and both eyes), so a texture
    cannot tell iris from sclera. Each eyeball instead gets UVs from an orthographic projection along
    its own forward axis into tile 7: a point's UV radius is the sine of its angle from the axis."""
    topo = head.topology
    neutral = head.neutral.numpy()
    uvs, uv_faces = [topo.uvs], topo.uv_faces.copy()
    next_id = len(topo.uvs)
    for side in ("Left", "Right"):
        iris_tris = topo.faces_of(f"M_Iris{side}")
        eye_tris = np.concatenate([topo.faces_of(f"M_Sclera{side}"), iris_tris])
        eye_verts = np.unique(topo.faces[eye_tris])
        centre, axis = eye_textures.eye_axis(head, side.lower())
        side_vec = np.cross([0.0, 1.0, 0.0], axis)
        side_vec /= np.linalg.norm(side_vec)
        up_vec = np.cross(axis, side_vec)
        direction = neutral[eye_verts] - centre
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        eye_uvs = np.stack([0.5 + 0.5 * direction @ side_vec, 0.5 + 0.5 * direction @ up_vec], -1)
        remap = np.full(len(neutral), -1, np.int64)
        remap[eye_verts] = next_id + np.arange(len(eye_verts))
        uv_faces[eye_tris] = remap[topo.faces[eye_tris]]
        uvs.append(eye_uvs + np.array([EYE_TILE, 0.0]))
        next_id += len(eye_verts)
    visible = ~np.isin(np.arange(len(topo.faces)), topo.faces_of(*HIDDEN_MATERIALS))
    return RenderLayout(np.concatenate(uvs).astype(np.float32), uv_faces, visible)


@lru_cache(maxsize=8)
def material_texels(head: HeadModel, material: str, tile: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The texels of `tile` covered by `material`'s triangles: (triangle ids (N,) int32, rows/cols (2, N)
    uint16, barycentrics (N, 3) float32).

    Depends only on the topology: computed once per head and size, and kept in the cache folder beside
    the head model (20 bytes per texel, 34 MB for the face and head tiles at 1024), so a new process
    reads it instead of rasterising the UV layout again (0.4-0.7 s)."""

    def compute() -> dict[str, np.ndarray]:
        tris = head.topology.faces_of(material)
        tri_local, bary = uv_rasterize(head.topology.uvs, head.topology.uv_faces[tris], tile, size)
        covered = tri_local >= 0
        return {"tri": tris[tri_local[covered]].astype(np.int32),
                "rows_cols": np.stack(np.nonzero(covered)).astype(np.uint16), "bary": bary[covered].astype(np.float32)}

    data = cached_arrays(_texels_cache_path(head, material, tile, size), compute)
    return data["tri"], data["rows_cols"], data["bary"]


@lru_cache(maxsize=4)
def lid_texels(head: HeadModel, size: int) -> np.ndarray:
    """(N,) bool over `material_texels(head, "M_Face", 0, size)`: the texels of the lids, those whose surface
    ICT's eyeBlink_L or eyeBlink_R moves by more than `LID_MOTION_CM`."""
    from sie3d.head.names import ICT_NAMES

    tri, _, _ = material_texels(head, "M_Face", 0, size)
    basis = head.expression_deltas().numpy()
    moved = np.zeros(len(head.neutral), bool)
    for name in ("eyeBlink_L", "eyeBlink_R"):
        moved |= np.linalg.norm(basis[ICT_NAMES.index(name)], axis=1) > LID_MOTION_CM
    return moved[head.topology.faces[tri]].any(1)


@lru_cache(maxsize=8)
def material_parts(head: HeadModel, material: str) -> np.ndarray:
    """(V,) int: which connected part of `material`'s triangles each vertex belongs to (0, 1, ... in vertex
    order of their first vertex), -1 for vertices outside the material: ICT's 32 teeth, its 12 eyelash cards.

    Labels spread along the triangles' edges (each vertex takes the smallest label among its neighbours)
    until they settle: plain numpy, as the parts are small (scipy's graph module costs 0.3 s to import)."""
    faces = head.topology.faces[head.topology.faces_of(material)]
    used, local = np.unique(faces, return_inverse=True)
    local = local.reshape(faces.shape)
    a, b = local.ravel(), np.roll(local, 1, 1).ravel()  # the triangles' sides
    label = np.arange(len(used))
    while True:
        low = np.minimum(label[a], label[b])
        spread = label.copy()
        np.minimum.at(spread, a, low)
        np.minimum.at(spread, b, low)
        spread = spread[spread]  # jump along chains of labels
        if np.array_equal(spread, label):
            break
        label = spread
    out = np.full(len(head.neutral), -1)
    _, out[used] = np.unique(label, return_inverse=True)
    return out


TEXELS_CACHE_VERSION = 1  # bump when `uv_rasterize` changes what it returns


def _texels_cache_path(head: HeadModel, material: str, tile: int, size: int) -> Path:
    """Cache file of `material_texels`, named by a digest of the UV layout it is computed from."""
    return head_cache_path(head, f"texels_v{TEXELS_CACHE_VERSION}", f"{material}_{tile}_{size}")


def head_cache_path(head: HeadModel, kind: str, detail: str, *arrays: np.ndarray) -> Path:
    """``KIND_DIGEST_DETAIL.npz`` in the cache folder beside the head model, for tables computed from `head` alone
    (`cached_arrays`): DIGEST is a digest of its UV layout and materials and of the `arrays` of the head the
    table also depends on (its neutral shape, its bases)."""
    from sie3d.assets import ict

    topo = head.topology
    digest = hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in (
        topo.uvs, topo.uv_faces, topo.face_material, *arrays)) + "|".join(topo.material_names).encode())  # fmt: skip
    return ict.cache_path().with_name(f"{kind}_{digest.hexdigest()[:12]}_{detail}.npz")


def uv_rasterize(uvs: np.ndarray, uv_faces: np.ndarray, tile: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Which of `uv_faces` covers each texel of `tile`, and where: ((S,S) index or -1, (S,S,3) barycentrics).

    Row 0 is the top of the image (v = 1), as in image files and glTF.
    """
    corners = uvs[uv_faces]  # (F, 3, 2)
    points = np.stack([(corners[..., 0] - tile) * size, (1.0 - corners[..., 1]) * size,
                       np.ones(corners.shape[:2])], -1).reshape(-1, 3)
    faces = np.arange(len(points)).reshape(-1, 3)
    cams = Cameras(torch.eye(3)[None], torch.eye(4)[None], size, size)
    frags = rasterize(torch.from_numpy(points.astype(np.float32)), torch.from_numpy(faces), cams)
    return frags.tri_id[0].numpy(), frags.bary[0].numpy()


def polygon_mask(points: np.ndarray, size: tuple[int, int], shrink: float = 0.0) -> np.ndarray:
    """(H, W) bool mask of a polygon given by pixel points, optionally shrunk toward its centroid."""
    centre = points.mean(0)
    points = centre + (points - centre) * (1.0 - shrink)
    image = Image.new("L", size, 0)
    ImageDraw.Draw(image).polygon([tuple(p) for p in points.tolist()], fill=255)
    return np.asarray(image) > 0


def _sample_bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """image (H, W, C) at pixel coordinates xy (N, 2) (pixel centres at +0.5)."""
    h, w = image.shape[:2]
    x = np.clip(xy[:, 0] - 0.5, 0, w - 1.001)
    y = np.clip(xy[:, 1] - 0.5, 0, h - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def push_pull_fill(colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Smoothly extrapolate (S,S,C) colours known with (S,S) weights into the unknown texels."""
    if colour.shape[0] <= 4 or weight.sum() == 0:
        total = max(weight.sum(), 1e-8)
        mean = (colour * weight[..., None]).sum((0, 1)) / total
        return np.broadcast_to(mean, colour.shape).copy()
    w = weight[..., None]
    h2, w2 = colour.shape[0] // 2, colour.shape[1] // 2
    premult = (colour * w)[: h2 * 2, : w2 * 2].reshape(h2, 2, w2, 2, -1).sum((1, 3))
    coarse_w = weight[: h2 * 2, : w2 * 2].reshape(h2, 2, w2, 2).sum((1, 3))
    coarse = push_pull_fill(premult / np.maximum(coarse_w, 1e-8)[..., None], np.minimum(coarse_w, 1.0))
    up = torch.nn.functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(coarse, np.float32)).permute(2, 0, 1)[None],
        size=colour.shape[:2], mode="bilinear", align_corners=False,
    )[0].permute(1, 2, 0).numpy()
    wc = np.clip(w, 0.0, 1.0)
    return colour * wc + up * (1 - wc)


def _blur(mask: np.ndarray, radius: float) -> np.ndarray:
    image = Image.fromarray((np.clip(mask, 0, 1) * 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), np.float32) / 255.0


def _skin_like(colours: np.ndarray, skin: np.ndarray, tolerance: float = 3.0) -> np.ndarray:
    """(N,) True where a linear colour is within `tolerance` robust deviations of the skin samples, in
    log-luminance and chromaticity (so shading alone does not disqualify a texel, hair does)."""

    def features(c: np.ndarray) -> np.ndarray:
        c = np.maximum(c, 1e-4)
        total = c.sum(-1, keepdims=True)
        return np.concatenate([np.log(total) * 0.5, c[:, :2] / total], -1)

    reference, query = features(skin), features(colours)
    centre = np.median(reference, 0)
    spread = np.median(np.abs(reference - centre), 0) * 1.4826 + np.array([0.04, 0.004, 0.004])
    return (np.abs(query - centre) / spread).max(-1) < tolerance


def _chroma(colours: np.ndarray) -> np.ndarray:
    """Chromaticity: linear colours (..., 3) over their luminance."""
    return colours / np.maximum(colours @ LUMINANCE, 1e-6)[..., None]


def _with_chroma(colours: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """`colours` (..., 3) with the chromaticity `chroma` (..., 3; luminance 1 or not), their luminance kept."""
    return chroma / np.maximum(chroma @ LUMINANCE, 1e-6)[..., None] * (colours @ LUMINANCE)[..., None]


def _shading_basis(normals: np.ndarray) -> np.ndarray:
    """(N, 9): the renderer's SH shading of each normal under each unit SH light (linear in the light)."""
    n = torch.from_numpy(normals.astype(np.float32))[None]
    return sh_shading(n, torch.eye(9)[None])[0].numpy().astype(np.float64)


def estimate_sh_lighting(normals: np.ndarray, colours_linear: np.ndarray) -> np.ndarray:
    """(N,3) unit normals, (N,3) linear colours -> (9, 3) SH light in the renderer's convention
    (`sie3d.render.sh_shading`), assuming a uniform albedo (absorbed into the light). Ridge-regularised
    on the higher bands: a single photo sees only half of the sphere."""
    return _solve_sh_lighting(_shading_basis(normals), colours_linear)


def _solve_sh_lighting(basis: np.ndarray, colours_linear: np.ndarray) -> np.ndarray:
    """`estimate_sh_lighting` from the (N, 9) `_shading_basis` of the normals."""
    ridge = 1e-2 * len(basis) * np.diag([0.0] + [1.0] * 3 + [4.0] * 5) * (basis**2).mean()
    return np.linalg.solve(basis.T @ basis + ridge, basis.T @ colours_linear.astype(np.float64)).astype(np.float32)


def _interpolate(values: np.ndarray, corners: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """(N, C): per-vertex `values` (V, C) at points given by triangle `corners` (N, 3) and barycentrics (N, 3)."""
    return sum(values[corners[:, k]] * bary[:, k : k + 1] for k in range(3))


def build_textures(photo_rgb: np.ndarray, obs: FaceObservation, fit: HeadFit, head: HeadModel,
                   size: int = 1024, config: TextureConfig = TextureConfig(),
                   occluded: np.ndarray | None = None) -> HeadTextures:  # fmt: skip
    """The person's textures from the photo (`size` texels per side of the face and head tiles; mouth, eye
    and lash tiles half of it), the eyes, lashes and mouth as `config` asks. `occluded` (H, W) bool: pixels of
    the photo where something lies over the face (a hand, `sie3d.face.hands.hand_mask`); no texel of the face
    tile takes its colour from them (they are filled as the photo's unseen parts are: the mirrored side, then
    the skin)."""
    topo = head.topology
    layout = render_layout(head)
    with torch.no_grad():
        verts = head(torch.from_numpy(fit.identity)[None], torch.from_numpy(fit.expression)[None])[0]
        normals = vertex_normals(verts[None], torch.from_numpy(topo.faces))[0].numpy()
    verts = verts.numpy()
    height, width = photo_rgb.shape[:2]

    # Where the photo shows skin: inside the face oval, outside the eye and mouth openings.
    landmarks = obs.landmarks_px[:, :2]
    skin = polygon_mask(landmarks[list(FACE_OVAL)], (width, height), shrink=0.03)
    for opening in (RIGHT_EYE_OPENING, LEFT_EYE_OPENING, MOUTH_OPENING):
        skin &= ~polygon_mask(landmarks[list(opening)], (width, height), shrink=-0.12)
    if occluded is not None:
        skin &= ~occluded

    # Face tile: texel -> surface point -> photo pixel. Only texels that land on skin can take the photo's
    # colour, so geometry, visibility and colours are computed for those first (about a third of the
    # tile): the texels of triangles whose projection meets the face oval's box, then those on skin.
    tri, (rows, cols), bary = material_texels(head, "M_Face", 0, size)
    covered = np.zeros((size, size), bool)
    covered[rows, cols] = True
    corners = topo.faces[tri]

    def points(ids: np.ndarray) -> np.ndarray:
        """(N, 3) head-space surface points of texels `ids`."""
        return _interpolate(verts, corners[ids], bary[ids])

    def texel_normals(ids: np.ndarray) -> np.ndarray:
        n = _interpolate(normals, corners[ids], bary[ids])
        return n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-9)

    triangle_px = fit.project(verts)[topo.faces]  # (F, 3, 2): a texel projects inside its triangle's
    (ox0, oy0), (ox1, oy1) = landmarks[list(FACE_OVAL)].min(0) - 2, landmarks[list(FACE_OVAL)].max(0) + 2
    low, high = triangle_px.min(1), triangle_px.max(1)
    near_oval = (high[:, 0] >= ox0) & (low[:, 0] <= ox1) & (high[:, 1] >= oy0) & (low[:, 1] <= oy1)
    candidates = np.flatnonzero(near_oval[tri])
    cam_points = fit.to_camera(points(candidates))
    pixels = fit.project_camera(cam_points)
    px = np.clip(pixels.astype(int), 0, [width - 1, height - 1])
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < height)
    on_skin = np.flatnonzero(inside & skin[px[:, 1], px[:, 0]])  # rows of the candidate arrays
    seen = candidates[on_skin]  # texel ids

    # Depth of the visible surface in the photo's camera (eyes, teeth and skin all occlude), rendered in
    # the window of the photo that those texels land in.
    (x0, y0), (x1, y1) = px[on_skin].min(0).tolist(), (px[on_skin].max(0) + 1).tolist()
    window = fit.crop(x0, y0, (x1 - x0, y1 - y0))
    cams = Cameras(torch.from_numpy(window.intrinsics)[None], torch.from_numpy(window.world_to_camera)[None],
                   *window.image_size)  # fmt: skip
    mask_faces = torch.from_numpy(layout.visible_faces)
    photo_frags = rasterize(torch.from_numpy(verts), torch.from_numpy(topo.faces), cams, face_mask=mask_faces)
    depth = photo_frags.depth[0].numpy()[px[on_skin, 1] - y0, px[on_skin, 0] - x0]
    seen_cam = cam_points[on_skin]
    to_camera = -seen_cam / np.linalg.norm(seen_cam, axis=1, keepdims=True)
    seen_normals = texel_normals(seen)
    facing = ((seen_normals @ fit.rotation.T) * to_camera).sum(1)  # cosine to the direction to the camera
    keep = (seen_cam[:, 2] <= depth + VISIBILITY_TOLERANCE_CM) & (facing > MIN_FACING)
    usable, usable_facing = seen[keep], facing[keep]

    photo_linear = srgb8_to_linear(photo_rgb)
    # Lighting from the skin below the brows (one skin albedo assumed; hair may hang over the forehead),
    # then the albedo of the usable texels.
    brows = verts[topo.landmarks_68[[19, 24]], 1].mean() + 0.3  # cm above the brow peaks
    colours = _sample_bilinear(photo_linear, pixels[on_skin[keep]])
    basis = _shading_basis(seen_normals[keep])
    reference = points(usable)[:, 1] <= brows  # not the forehead
    sh = _solve_sh_lighting(basis[reference], colours[reference])
    shading = (basis @ sh).astype(np.float32)
    mean_shading = np.median(shading[reference], axis=0)

    def gain(shading: np.ndarray) -> np.ndarray:
        return 1.0 / np.clip(shading / mean_shading, DARKEST_SHADING, None)

    # Brightening what the estimated light left dark trusts the fitted normals. On the lids they are least right:
    # the upper lid under the brow, folded down in the model with the eye open, took up to 2.9x the photo's colour,
    # and when the lid closes and turns to the light it showed as a bright band on every closed eye; under the nose
    # wings (normals facing down, the real skin there lit by more than the model says) up to 3.6x, a white blob on
    # the nose in every turned view and exported asset. So a texel is brightened at most to BRIGHTEST_LID x the
    # median skin on the lids (`lid_texels`), BRIGHTEST_SKIN x elsewhere; the photo's own highlights stay as the
    # photo shows them. (The price: in the photo's own view, where the brightened colours are exactly what
    # re-lighting gives back, the capped texels render a little darker than the photo.)
    skin_luminance = float(np.median((colours[reference] * gain(shading[reference])) @ LUMINANCE))
    on_lids = lid_texels(head, size)

    def albedo_of(texels: np.ndarray, colours: np.ndarray, shading: np.ndarray) -> np.ndarray:
        """Up to one global scale: the photo's mean exposure stays in the texture."""
        brightest = np.where(on_lids[texels], BRIGHTEST_LID, BRIGHTEST_SKIN)
        ceiling = np.maximum(1.0, brightest * skin_luminance / np.maximum(colours @ LUMINANCE, 1e-6))
        return colours * np.minimum(gain(shading), ceiling[:, None])

    # Skin in shadow is redder than lit skin (light scattered under it comes out red): a texel the de-lighting
    # brightens takes the lit skin's chromaticity in proportion (`SHADOW_CHROMA_GAIN`), its luminance its own --
    # but not on the lips and brows, whose colours are their own.
    lit = reference & ((shading @ LUMINANCE) >= (mean_shading @ LUMINANCE))
    skin_chroma = _chroma(np.median(colours[lit if lit.sum() >= 50 else reference], axis=0))
    features = np.zeros((height, width), bool)
    for outline in (OUTER_LIPS, RIGHT_BROW, LEFT_BROW):
        features |= polygon_mask(landmarks[list(outline)], (width, height), shrink=-0.15)

    def toward_skin(albedo: np.ndarray, colours: np.ndarray, at: np.ndarray) -> np.ndarray:
        """`albedo` (N, 3) lifted from the photo's `colours` (N, 3) at the photo's pixels `at` (N, 2) int."""
        lifted = (albedo @ LUMINANCE) / np.maximum(colours @ LUMINANCE, 1e-6)
        share = np.clip((lifted - 1.0) / (SHADOW_CHROMA_GAIN - 1.0), 0.0, 1.0)
        share = np.where(features[at[:, 1], at[:, 0]], 0.0, share)[:, None]
        return _with_chroma(albedo, _chroma(albedo) * (1 - share) + skin_chroma * share)

    albedo = albedo_of(usable, colours, shading)
    # A fringe is inside the face oval but is not skin: on the forehead, drop texels whose albedo is far
    # from the skin seen below the brows (judged before any colour is moved toward the skin's).
    skin_like = reference.copy()
    skin_like[~reference] = _skin_like(albedo[~reference], albedo[reference])
    albedo = toward_skin(albedo, colours, px[on_skin[keep]])[skin_like]
    usable, usable_facing = usable[skin_like], usable_facing[skin_like]
    skin_albedo = np.median(albedo, axis=0)

    weight = np.zeros((size, size), np.float32)
    weight[rows[usable], cols[usable]] = np.clip((usable_facing - MIN_FACING) / 0.3, 0.0, 1.0)
    # Left/right symmetry: a texel the photo does not see takes its mirror's colour.
    mirror_weight = weight[:, ::-1]
    take_mirror = mirror_weight > weight
    weight = np.maximum(weight, mirror_weight)
    coverage = float((weight[covered] > 0.5).mean())
    solid = (weight > 0.5).astype(np.float32)
    blend = _blur(solid * _blur(solid, 2) ** 4, size / 256)
    # The photo's colour of every texel that shows in the result: the usable texels, and those near them
    # that the blend below reaches (their own colour, however poorly seen, unless the mirror's is better).
    tile = np.zeros((size, size, 3), np.float32)
    tile[rows[usable], cols[usable]] = albedo
    reached = (blend[rows, cols] > 0) & ~take_mirror[rows, cols]
    reached[usable] = False
    near = np.flatnonzero(reached)
    near_px = fit.project(points(near))
    near_at = np.clip(near_px.astype(int), 0, [width - 1, height - 1])
    # near texels whose photo pixel is occluded: they take the fill below
    hidden = np.zeros(len(near), bool) if occluded is None else occluded[near_at[:, 1], near_at[:, 0]]
    near_colours = _sample_bilinear(photo_linear, near_px)
    near_albedo = albedo_of(near, near_colours, (_shading_basis(texel_normals(near)) @ sh).astype(np.float32))
    tile[rows[near], cols[near]] = toward_skin(near_albedo, near_colours, near_at)
    tile = np.where(take_mirror[..., None], tile[:, ::-1], tile)
    sh = sh / mean_shading  # normalised: albedo x shading(normal) reproduces the photo's colours
    # Seamless fill: push-pull extrapolation, blended through the feathered mask.
    filled = push_pull_fill(tile, solid)
    tile[rows[near[hidden]], cols[near[hidden]]] = filled[rows[near[hidden]], cols[near[hidden]]]
    face_tile = filled * (1 - blend[..., None]) + tile * blend[..., None]
    # Pull the far extrapolation toward the median skin so ears and neck edges do not inherit stray tones.
    # Far from anything seen, converge to the median skin, which is also the back-of-head colour: no seam
    # where the face tile meets the back tile on the scalp and the neck.
    far = 1.0 - _blur(solid, size / 24)
    face_tile = face_tile * (1 - far[..., None]) + skin_albedo * far[..., None]

    tiles = {0: face_tile.astype(np.float32)}
    detailed = config.mouth == "detailed"
    tiles[1] = _back_head_tile(head, skin_albedo, size, detailed_socket=detailed)
    if detailed:
        teeth = mouth_textures.photo_teeth_colour(photo_linear, obs)
        tiles[2] = mouth_textures.gums_tongue_tile(head, size // 2)
        tiles[3] = mouth_textures.teeth_tile(head, size // 2, *(() if teeth is None else (teeth,)))
    else:
        tiles[2] = _mouth_tile(head, "M_GumsTongue", 2, GUMS, size // 2, falloff=3.0)  # the tongue lies deep
        tiles[3] = _mouth_tile(head, "M_Teeth", 3, TEETH, size // 2, falloff=1.5)
    if config.eyes == "photo":
        skin_photo = colours[reference][:: max(1, int(reference.sum()) // 4000)]
        samples = eye_textures.sample_eyes(photo_linear, obs, skin_photo)
        corners = topo.landmarks_68[[36, 39, 42, 45]]  # the eyes' corners (iBUG 68 numbering)
        eye_width = float(np.linalg.norm(verts[corners[0]] - verts[corners[1]])
                          + np.linalg.norm(verts[corners[2]] - verts[corners[3]])) / 2  # fmt: skip
        tiles[EYE_TILE] = eye_textures.eye_texture(samples, head, size // 2, eye_width)
        tiles[EYE_SHADE] = eye_textures.eye_shade_texture(size // 4)
    else:
        tiles[EYE_TILE] = _eye_tile(head, photo_linear, obs, size // 2)
    if config.lashes:
        tiles[LASH_TILE] = _lash_tile(head, size // 2)
    tiles = {k: np.ascontiguousarray(np.clip(v, 0.0, 1.0), np.float32) for k, v in tiles.items()}
    return HeadTextures(tiles, sh, skin_albedo.astype(np.float32), coverage)


def _mouth_tile(head: HeadModel, material: str, tile: int, colour: tuple[float, float, float],
                size: int, falloff: float) -> np.ndarray:
    """Teeth or gums and tongue, darkened with depth into the mouth: the front incisors and the lips'
    inner gums catch the light, the molars and the back of the tongue sit in the cavity's shadow (a
    baked stand-in for the occlusion a single SH light cannot produce)."""
    tri, (rows, cols), bary = material_texels(head, material, tile, size)
    neutral = head.neutral.numpy()
    depth = (neutral[head.topology.faces[tri], 2] * bary).sum(1)  # +z = toward the lips
    front, back = np.percentile(depth, 98), np.percentile(depth, 2)
    openness = np.clip((depth - back) / max(front - back, 1e-6), 0.0, 1.0) ** falloff
    tile_image = np.broadcast_to(np.asarray(colour, np.float32) * 0.15, (size, size, 3)).copy()
    tile_image[rows, cols] = np.asarray(colour, np.float32) * (0.15 + 0.85 * openness)[:, None]
    return tile_image


@lru_cache(maxsize=2)
def _lash_tile_cached(head: HeadModel, size: int) -> np.ndarray:
    return eye_textures.lash_texture(head, size)


def _lash_tile(head: HeadModel, size: int) -> np.ndarray:
    """The eyelash tile (the same for everyone: it depends on the layout only), a fresh copy."""
    return _lash_tile_cached(head, size).copy()


def _back_head_tile(head: HeadModel, skin: np.ndarray, size: int, detailed_socket: bool = False) -> np.ndarray:
    """Skin for head and neck; a dark red cavity for the mouth socket (darkening with depth when
    `detailed_socket`); dark eye sockets."""
    from sie3d.assets.ict import REGIONS

    tri, (rows, cols), bary = material_texels(head, "M_BackHead", 1, size)
    tile = np.broadcast_to(skin, (size, size, 3)).copy()
    vertex = head.topology.faces[tri, 0]

    def in_region(name: str) -> np.ndarray:
        first, end = REGIONS[name][:2]
        return (vertex >= first) & (vertex < end)

    mouth = in_region("mouth_socket")
    eye = in_region("eye_socket_left") | in_region("eye_socket_right")
    if detailed_socket:
        depth = _interpolate(head.neutral.numpy()[:, 2:], head.topology.faces[tri[mouth]], bary[mouth])[:, 0]
        tile[rows[mouth], cols[mouth]] = mouth_textures.socket_colours(depth)
    else:
        tile[rows[mouth], cols[mouth]] = MOUTH_SOCKET
    tile[rows[eye], cols[eye]] = EYE_SOCKET
    return tile


def _eye_tile(head: HeadModel, photo_linear: np.ndarray, obs: FaceObservation, size: int) -> np.ndarray:
    """Procedural eyeball in the projected eye UVs (see `render_layout`): sclera, an iris in the person's
    eye colour with a darker limbal ring, and a pupil. Both eyes share it."""
    topo, neutral = head.topology, head.neutral.numpy()
    iris_tris = topo.faces_of("M_IrisLeft")
    centre, axis = eye_textures.eye_axis(head, "left")
    # The iris spans 85% of ICT's iris mesh, which is larger than an anatomical iris (~6 mm radius): the
    # fitted lids open wider than the photo's (see README, limitations), and an anatomically sized iris
    # then shows sclera all around it -- a startled stare. UV radius = sin(angle from the axis) / 2.
    iris_dirs = neutral[np.unique(topo.faces[iris_tris])] - centre
    iris_dirs /= np.linalg.norm(iris_dirs, axis=1, keepdims=True)
    iris_radius = 0.5 * np.sqrt(1.0 - np.clip(iris_dirs @ axis, -1, 1) ** 2).max() * IRIS_FRACTION_OF_MESH
    grid = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(grid, 1.0 - grid)
    radius = np.hypot(u - 0.5, v - 0.5)
    iris = np.asarray(_iris_colour(photo_linear, obs))
    ring = np.clip((radius / iris_radius - 0.78) / 0.22, 0.0, 1.0)[..., None]
    # The sclera darkens away from the iris, as under the lids' shadow: no flat white crescents where a
    # wider-open eye shows what the photo never saw.
    sclera = np.asarray(SCLERA) * (1.0 - 0.6 * np.clip((radius - iris_radius) / (0.5 - iris_radius), 0, 1))[..., None]
    texture = np.where((radius < iris_radius)[..., None], iris * (1.0 - 0.55 * ring), sclera)
    texture = np.where((radius < PUPIL_FRACTION * iris_radius)[..., None], np.asarray(PUPIL), texture)
    return texture.astype(np.float32)


def _iris_colour(photo_linear: np.ndarray, obs: FaceObservation) -> np.ndarray:
    """The iris colour: the darker half of samples on two rings around each iris centre (the brighter
    half is catch-lights, lids and sclera), kept within the range of real eye colours."""
    samples = []
    for centre_id in (468, 473):
        centre = obs.landmarks_px[centre_id, :2]
        radius = np.linalg.norm(obs.landmarks_px[centre_id + 1, :2] - centre)
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        for r in (0.55, 0.75):
            ring = centre + r * radius * np.stack([np.cos(angles), np.sin(angles)], -1)
            samples.append(_sample_bilinear(photo_linear, ring + 0.5))
    samples = np.concatenate(samples)
    luminance = samples.mean(1)
    colour = np.median(samples[luminance <= np.median(luminance)], axis=0)
    # Irises are not skin-red: pull the chroma halfway toward a neutral of the same brightness.
    colour = 0.5 * colour + 0.5 * colour.mean()
    return np.clip(colour * 1.6, 0.04, 0.45).astype(np.float32)  # photos under-expose irises
