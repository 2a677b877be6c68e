"""The hair's texture: the photo's hair where the photo shows it, synthesized from it elsewhere.

The texture (`HairTexture.rgba`, linear albedo + alpha) is laid out like the hair grid (`sie3d.hair.geometry`):
u runs around the head (azimuth -180°..180°), v from the crown (v = 1) down, so hair strands, which fall
from the crown, run along v everywhere.

1. **From the photo**: every texel is a point on the hair's outer surface; where that point faces the photo's
   camera and projects into the (hole-filled) hair mask, it takes the photo's colour, linearised and divided by
   the photo's estimated light as a surface facing the camera receives it (the light's colour and strength; the
   photo's shading across the hair stays in the texture).
2. **Elsewhere, synthesized** (`synthesize`): a smooth base colour (push-pull continuation of the seen texels)
   times detail copied patch by patch from the seen hair -- the ratio of a seen texel to its base, so strands,
   highlights and gaps travel, not the seen part's brightness. Patches keep their orientation, so strands still
   run along v (the hair's direction), and overlap with raised-cosine weights so no seam shows. Specks of the seen
   hair (`despeckled`: points far from their neighbours' median) are copied at their neighbours' brightness.
   Headwear with colours of its own (a hat: `HairMask.opaque`) keeps every seen colour and goes round the head
   ring by ring instead (`synthesize_rings`): a cap's band under its crown, a Santa hat's brim under its red.
3. **Alpha** (`hair_alpha`): the grid's presence, its edge smoothed (`smooth_edge`: a curve, not the grid's
   staircase), its 0.5 level roughened by noise stretched along the strands and narrow across them: the edge of
   the volume is a comb of strand tips, not a helmet's rim. The tips are long where the hair hangs (below
   `SHORT_TIPS_POLAR_DEG`) and short high on the head, at the hairline and the temples, where hair grows out of the
   skin: long tips there hung over the forehead as a fringe of dark teeth the photo does not show.
4. **The scalp under the hair** (`paint_scalp`): the hair texture is painted on the head's own texture in the
   directions that hold hair (by its alpha, in the roots' shade), so the scalp showing through thin hair looks
   like hair, and where the photo's hairline is lower than the volume may reach (the volume keeps clear of the
   forehead under every expression) the hair is painted down to it, fading into the skin over about a millimetre
   (`SCALP_EDGE_BLUR`): a painted comb of hard teeth under the volume's own read as a dark band of stripes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from sie3d.hair.geometry import (
    HairConfig,
    HairGrid,
    HairMesh,
    blur_around,
    directions,
    facing_camera,
    outward_normals,
    to_angles,
)
from sie3d.head.fit import HeadFit
from sie3d.head.model import HeadModel
from sie3d.head.texture import (
    LUMINANCE,
    HeadTextures,
    _interpolate,
    _sample_bilinear,
    _shading_basis,
    material_texels,
    push_pull_fill,
    srgb8_to_linear,
)

__all__ = ["HairTexture", "despeckled", "hair_alpha", "hair_at", "hair_texture", "paint_scalp", "scalp_roughness",
           "row_polar", "short_tips", "smooth_edge", "soft_edged", "strand_noise", "synthesize", "synthesize_rings",
           "texel_points"]

OUTLIER_RATIO = 3.0  # seen texels this many times brighter or darker than the hair above the forehead are dropped
SEEN_FACING = 0.05  # a texel takes the photo's colour where cos(normal, to camera) exceeds this
STRAND_LENGTH = 24.0  # texels: how far along v the alpha noise is correlated where the hair hangs ...
HAIRLINE_STRAND_LENGTH = 8.0  # ... and where it grows out of the skin (the hairline, the temples)
SHORT_TIPS_POLAR_DEG = (80.0, 110.0)  # polar angles (0 = the crown, 90 = the eyes' height) over which the tips
# lengthen from the hairline's to the hanging hair's: the forehead's hairline lies at 40-75 degrees, hair hangs below
MIN_RING_SEEN = 8  # headwear: a row's median colour needs this many seen texels (`synthesize_rings`) ...
RING_FACING = 0.5  # ... that face the camera by more than this cosine (60 degrees) ...
RING_NOISE = 0.1  # ... and its rings carry strand noise of this std (fabric, not a painted band) ...
RING_SMOOTH = 10.0  # ... their colours smoothed over this many rows (std): one row's shading made stripes
STRAND_NOISE = 0.35  # the std of the noise that stands in for patches where too little hair is seen
MIN_SOURCES = 64  # the synthesis copies from at least this many windows of the seen hair ...
MIN_SOURCE_SEEN = 0.5  # ... each at least this much seen
SPECK_LOG = 0.3  # a seen texel whose brightness departs from its 5 x 5 median by more than this (natural log) is a
# speck (a pore of the scalp, a highlight, a compression artefact; `despeckled`), copied at the median's brightness:
# copied patch by patch, specks became dots and dashes all over the back of the head
EDGE_NOISE = 0.2  # presence units per standard deviation by which the strand noise moves the alpha's edge
EDGE_SMOOTHING = 1.0  # grid cells: the blur that turns the presence's staircase edge into a curve
SCALP_ROOT_SHADE = 0.7  # the hair painted on the scalp is in the shade of the hair above it
SCALP_EDGE_BLUR = 2.0  # hair texels (about 1 mm on the head): the painted hair's alpha is blurred by this much
SCALP_MATERIALS = {"M_Face": 0, "M_BackHead": 1}  # the head's materials the hair is painted on, and their tiles
# glTF roughness of the head where hair is painted on it: matte. At the skin's 0.6, a viewer's light made a grey
# sheen of the smooth scalp where it shows under the strand tips (three.js, the web page's key light).
SCALP_ROUGHNESS = 1.0
SCALP_ROUGHNESS_SIZE = 256  # texels of its roughness map's side


@dataclass(frozen=True)
class HairTexture:
    """(S, S, 4) float32: linear albedo and alpha, row 0 = v 1 (the crown); `seen` is the fraction of the
    covered texels (alpha > 0.5) whose colour came straight from the photo."""

    rgba: np.ndarray
    seen: float


def row_polar(grid: HairGrid, size: int) -> np.ndarray:
    """(S,) the polar angle (radians) of each row of an S x S hair texture: v = 1 - polar / (the grid's first +
    last polar), as in the mesh's UVs."""
    return (np.arange(size) + 0.5) / size * (grid.polar[0] + grid.polar[-1])


def texel_points(grid: HairGrid, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every texel of an S x S hair texture on the hair's outer surface: (points (S, S, 3) head space cm,
    outward normals (S, S, 3), presence (S, S))."""
    u = (np.arange(size) + 0.5) / size
    polar = row_polar(grid, size)
    azimuth = -np.pi + 2 * np.pi * u
    dirs = directions(polar[:, None], azimuth[None])
    radius, presence = grid.radius_at_angles(polar[:, None], azimuth[None])  # (S, S): rows and columns apart
    points = grid.centre + dirs * radius[..., None]
    normals = outward_normals(dirs, polar[:, None], grid.drop_polar)
    return points.astype(np.float32), normals.astype(np.float32), presence.astype(np.float32)


def short_tips(grid: HairGrid, size: int) -> np.ndarray:
    """(S,) per row of an S x S hair texture: 1 where its strand tips are the hairline's (short), 0 where they are
    the hanging hair's, between them across `SHORT_TIPS_POLAR_DEG`."""
    polar = np.degrees(row_polar(grid, size))
    low, high = SHORT_TIPS_POLAR_DEG
    return np.clip((high - polar) / (high - low), 0.0, 1.0).astype(np.float32)


def hair_alpha(presence: np.ndarray, rng: np.random.Generator, short: np.ndarray | float = 0.0) -> np.ndarray:
    """(S, S) alpha from the texels' presence: 1 inside, 0 outside, the edge broken into strand tips, as long as
    `STRAND_LENGTH` where `short` (per row (S,), or one value) is 0 and `HAIRLINE_STRAND_LENGTH` where it is 1."""
    white = rng.standard_normal(presence.shape).astype(np.float32)
    short = np.broadcast_to(np.asarray(short, np.float32), presence.shape[:1])[:, None]
    noise = np.zeros_like(white)
    for length, weight in ((STRAND_LENGTH, 1.0 - short), (HAIRLINE_STRAND_LENGTH, short)):
        if weight.any():
            blurred = cv2.GaussianBlur(white, (0, 0), sigmaX=0.8, sigmaY=length / 3)
            noise += weight * blurred / (blurred.std() + 1e-6)
    level = presence + EDGE_NOISE * np.clip(noise, -2.0, 2.0)
    alpha = np.clip((level - 0.45) / 0.1, 0.0, 1.0).astype(np.float32)
    # Strand tips hang from the hair: where the presence lingers below one half (the continued edge), the noise
    # alone raised specks and short strokes that floated on the skin below the hairline. Only the tips joined to
    # where the hair is (presence >= 0.5) are kept.
    # (u wraps around the head: labelled side by side three times, a piece across the seam stays one)
    width = alpha.shape[1]
    count, labels = cv2.connectedComponents(np.tile(alpha > 0, (1, 3)).astype(np.uint8), connectivity=8)
    joined = np.zeros(count, bool)
    joined[labels[np.tile((presence >= 0.5) & (alpha > 0), (1, 3))]] = True
    joined[0] = False
    return np.where(joined[labels[:, width : 2 * width]], alpha, 0.0).astype(np.float32)


def smooth_edge(presence: np.ndarray, cell: tuple[float, float]) -> np.ndarray:
    """(S, S) the texels' presence blurred by `EDGE_SMOOTHING` of a grid cell (`cell`: texels per grid row and
    per grid column), wrapping around the head. The grid's presence is nearly binary per grid vertex, and
    interpolated bilinearly its 0.5 level follows the cells: a staircase wherever the edge runs diagonally
    (from the temple down behind the ear). Blurred, the level is a smooth curve through the steps."""
    return blur_around(presence, EDGE_SMOOTHING * cell[0], EDGE_SMOOTHING * cell[1])


def synthesize(colour: np.ndarray, seen: np.ndarray, wanted: np.ndarray, rng: np.random.Generator,
               patch: int) -> np.ndarray:  # fmt: skip
    """(H, W, 3) `colour` kept where `seen` (H, W) is 1 and synthesized where it is 0 and `wanted` (H, W)
    asks for it: a push-pull base colour times detail patches (ratio to the base) taken from the most seen
    places (their seen texels only), copied with their orientation (strands along v; at random mirrored across
    them) and blended with raised-cosine weights."""
    height, width = colour.shape[:2]
    base = push_pull_fill(colour, seen.astype(np.float32))
    smooth_base = cv2.GaussianBlur(base, (0, 0), sigmaX=patch / 2)
    # (the unseen texels, black, stand in as the base colour: else a seen texel at the edge of what the photo shows,
    # with more unseen neighbours than seen, was a "speck" against their median of black)
    filled = np.where(seen[..., None] > 0, colour, base)
    ratio = np.clip(despeckled(filled, seen) / np.maximum(smooth_base, 1e-4), 0.0, 4.0)
    step = max(2, patch // 2)
    seen_fraction = cv2.blur(seen.astype(np.float32), (patch, patch), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    fractions = seen_fraction[: height - patch + 1, : width - patch + 1]
    # Sources: windows all but fully seen -- or, where the photo shows little hair (a tied-back cut seen from the
    # front), the `MIN_SOURCES` most seen, down to half seen: one or two sources tiled the whole back of the head
    # in a regular knitted pattern. A source's unseen texels are not copied (their weight is zero).
    count = min(MIN_SOURCES, fractions.size)
    kth_most_seen = float(np.partition(fractions.ravel(), fractions.size - count)[fractions.size - count])
    threshold = min(0.97, max(MIN_SOURCE_SEEN, kth_most_seen))
    ys, xs = np.nonzero(fractions >= threshold)
    if len(ys) == 0:  # too little seen hair for patches: strand-like noise around the base colour
        detail = strand_noise((height, width), rng, STRAND_NOISE)
    else:
        window = np.sin(np.pi * (np.arange(patch) + 0.5) / patch) ** 2
        weight = np.outer(window, window)[..., None].astype(np.float32)
        acc = np.zeros((height + patch, width + patch, 3), np.float32)
        total = np.zeros((height + patch, width + patch, 1), np.float32)
        need = _patches_needed(cv2.dilate((wanted & (seen < 1)).astype(np.uint8), np.ones((patch, patch), np.uint8)),
                               step, patch)  # fmt: skip
        for i, top in enumerate(range(-step, height, step)):
            for j, left in enumerate(range(-step, width, step)):
                if not need[i, j]:
                    continue
                k = int(rng.integers(len(ys)))
                source = ratio[ys[k] : ys[k] + patch, xs[k] : xs[k] + patch]
                source_weight = weight * seen[ys[k] : ys[k] + patch, xs[k] : xs[k] + patch, None]
                if rng.random() < 0.5:  # mirrored across the strands (which still run along v): twice the variety
                    source, source_weight = source[:, ::-1], source_weight[:, ::-1]
                acc[top + step : top + step + patch, left + step : left + step + patch] += source * source_weight
                total[top + step : top + step + patch, left + step : left + step + patch] += source_weight
        acc, total = acc[step : step + height, step : step + width], total[step : step + height, step : step + width]
        detail = np.where(total > 1e-3, acc / np.maximum(total, 1e-6), 1.0)
    return _kept_where_seen(colour, seen, np.clip(smooth_base * detail, 0.0, 1.0))


def strand_noise(shape: tuple[int, int], rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """(H, W, 1) brightness factors around 1: noise stretched along v (the strands), `amplitude` its std."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 0.7, 10.0)
    return 1.0 + amplitude * noise[..., None] / (noise.std() + 1e-6)


def _kept_where_seen(colour: np.ndarray, seen: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """`colour` where `seen` (H, W), `synthetic` elsewhere, the seen part's edge blended over 1.5 texels."""
    keep = cv2.GaussianBlur(seen.astype(np.float32), (0, 0), 1.5)[..., None] * seen[..., None]
    return (colour * keep + synthetic * (1 - keep)).astype(np.float32)


def synthesize_rings(colour: np.ndarray, seen: np.ndarray, facing: np.ndarray, rng: np.random.Generator,
                     patch: int) -> np.ndarray:  # fmt: skip
    """Headwear's (H, W, 3) `colour`, kept where `seen` (H, W) is 1 and elsewhere the median colour of the seen
    texels of its row that face the camera (`facing` (H, W), the cosine, above `RING_FACING`) -- the ring round
    the head at its angle from the crown -- in faint strand noise. A hat goes round the head as the photo shows
    its front: a cap's band under its crown, a Santa hat's brim under its red. Rows with fewer than
    `MIN_RING_SEEN` such texels take the colour of the nearest rows that have them (interpolated), and the rings'
    colours are smoothed across rows (`RING_SMOOTH`); with no such row, it is synthesized as hair is, in patches
    `patch` texels wide. (Texels seen edge-on, at the hat's outline in the photo,
    take the outline's or the backdrop's colour: as rings, they made the top of a white-crowned cap navy.)
    (Patches copied from the front, as hair is synthesized, mottled a two-toned cap's sides and back with its
    band's and crown's colours, and copied its badge.)"""
    height = colour.shape[0]
    face_on = (seen > 0) & (facing > RING_FACING)
    rows = np.flatnonzero(face_on.sum(1) >= MIN_RING_SEEN)
    if rows.size == 0:  # seen only edge-on: as hair is
        return _synthesize_around(colour, seen, np.ones(seen.shape, bool), rng, patch)
    medians = np.stack([np.median(colour[row][face_on[row]], 0) for row in rows])
    ring = np.stack([np.interp(np.arange(height), rows, medians[:, k]) for k in range(3)], -1)
    ring = cv2.GaussianBlur(ring[:, None].astype(np.float32), (0, 0), 1e-3, RING_SMOOTH,
                            borderType=cv2.BORDER_REPLICATE)[:, 0]  # fmt: skip
    synthetic = np.clip(ring[:, None, :] * strand_noise(seen.shape, rng, RING_NOISE), 0.0, 1.0)
    return _kept_where_seen(colour, seen, synthetic)


def despeckled(colour: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(H, W, 3) `colour` with its specks -- seen (`seen` > 0) texels whose brightness departs by more than
    `SPECK_LOG` from the median of the 5 x 5 texels around them -- scaled to that median (their hue kept). (A
    line-preserving test, the median along each of four lines through the texel, kept the dots: they are short
    dashes more than points.)"""
    brightness = np.maximum(colour.mean(-1), 1e-4).astype(np.float32)
    median = np.maximum(cv2.medianBlur(brightness, 5), 1e-4)
    speck = (np.abs(np.log(brightness / median)) > SPECK_LOG) & (seen > 0)
    return np.where(speck[..., None], colour * (median / brightness)[..., None], colour).astype(np.float32)


def _patches_needed(need: np.ndarray, step: int, patch: int) -> np.ndarray:
    """(I, J) bool: whether `need` (H, W) is nonzero anywhere under the patch at row ``i * step - step``,
    column ``j * step - step`` (``patch`` texels wide, clipped to the image): `synthesize`'s grid of patches,
    from one table of prefix sums instead of a look at every patch."""
    height, width = need.shape
    total = np.zeros((height + 1, width + 1), np.int64)
    total[1:, 1:] = (need > 0).cumsum(0).cumsum(1)
    tops, lefts = np.arange(-step, height, step), np.arange(-step, width, step)
    r0, r1 = np.maximum(tops, 0)[:, None], np.minimum(tops + patch, height)[:, None]
    c0, c1 = np.maximum(lefts, 0)[None], np.minimum(lefts + patch, width)[None]
    return total[r1, c1] - total[r0, c1] - total[r1, c0] + total[r0, c0] > 0


def _synthesize_around(colour: np.ndarray, seen: np.ndarray, wanted: np.ndarray, rng: np.random.Generator,
                       patch: int) -> np.ndarray:  # fmt: skip
    """`synthesize` on a texture whose u wraps around the head: run on the texture with `patch` columns of
    each side appended to the other, then the first `patch` columns cross-faded into what was synthesized past
    the last column, so u = 0 continues u = 1 (no seam down the middle of the back)."""
    size = colour.shape[1]

    def wrap(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x[:, -patch:], x, x[:, :patch]], 1)

    wide = synthesize(wrap(colour), wrap(seen), wrap(wanted), rng, patch)
    out = wide[:, patch : patch + size].copy()
    past_the_end = wide[:, patch + size :]  # continues column size - 1, stands for columns 0 .. patch - 1
    fade = (1.0 - (np.arange(patch) + 0.5) / patch)[None, :, None]
    out[:, :patch] = past_the_end * fade + out[:, :patch] * (1 - fade)
    return out


def hair_texture(photo_rgb: np.ndarray, fit: HeadFit, mesh: HairMesh, hair_mask: np.ndarray,
                 sh_lighting: np.ndarray, landmarks_px: np.ndarray, config: HairConfig | None = None, *,
                 headwear: bool = False) -> HairTexture:  # fmt: skip
    """The hair's texture (see the module doc). `hair_mask` (H, W) is the binary, hole-filled mask the
    geometry used (`sie3d.hair.geometry.filled_mask`); `sh_lighting` (9, 3) the photo's estimated light;
    `landmarks_px` (468, 2) the face's landmarks in the photo (where the hairline is). `headwear`: the mask took
    the region for headwear because of a vivid colour or two tones no hair has (`HairMask.opaque`; not for
    dyed-looking hair or a region large enough to hold backdrop): it is opaque and has colours of its own (a Santa
    hat's red crown over its white brim), so every seen texel keeps the photo's colour, however unlike the part
    above the forehead (hair's outlier rule would take a crown three times darker than the brim for backdrop
    between strands and paint the brim's white over it), and the rest goes round the head ring by ring
    (`synthesize_rings`)."""
    config = config or HairConfig()
    size = config.texture_size
    rng = np.random.default_rng(config.seed)
    points, normals, presence = texel_points(mesh.grid, size)
    presence = smooth_edge(presence, (size / len(mesh.grid.polar), size / (len(mesh.grid.azimuth) - 1)))
    flat_points, flat_normals = points.reshape(-1, 3), normals.reshape(-1, 3)
    pixels = fit.project(flat_points)
    camera_head = -fit.rotation.T @ fit.translation
    facing = facing_camera(flat_points, flat_normals, camera_head)
    height, width = hair_mask.shape
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < width - 1) & (pixels[:, 1] >= 0) & (pixels[:, 1] < height - 1)
    in_mask = _sample_bilinear(hair_mask[..., None], pixels)[:, 0] > 0.99
    seen = (facing > SEEN_FACING) & inside & in_mask & (presence.reshape(-1) > 0.5)
    colour = np.zeros((size * size, 3), np.float32)
    if seen.any():
        photo = srgb8_to_linear(photo_rgb)
        # The light's colour is divided out as seen by a surface facing the camera, not its strength and not per
        # normal: the photo's lighting is estimated on the face, and extrapolated to the crown's upward normals
        # it blew the top of the hair up to white; divided by its strength toward the camera (1.4-1.5x the face's
        # median light, to which the skin's albedo is scaled) the hair came out at 0.63-0.86x the photo's, blond
        # rendered brown. So the hair keeps the brightness it has beside the skin in the photo.
        towards = (camera_head - mesh.grid.centre) / np.linalg.norm(camera_head - mesh.grid.centre)
        shading = _shading_basis(towards[None].astype(np.float32)) @ sh_lighting.astype(np.float64)
        strength = float(shading[0] @ LUMINANCE)
        light_colour = shading / strength if strength > 0.05 else np.ones_like(shading)  # (no light there: as is)
        colour[seen] = _sample_bilinear(photo, pixels[seen]) / np.maximum(light_colour, 0.05)
        if not headwear:
            # Skin or backdrop showing between strands, or backdrop the mask took for hair, is not hair: a seen
            # texel far brighter or darker than the hair just above the forehead is synthesized instead.
            luminance = colour[seen] @ LUMINANCE
            reference = luminance[_above_forehead(pixels[seen], landmarks_px)]
            typical = float(np.median(reference if reference.size >= 50 else luminance))
            outlier = (luminance > OUTLIER_RATIO * typical) | (luminance < typical / OUTLIER_RATIO)
            seen[np.flatnonzero(seen)[outlier]] = False
    colour = np.clip(colour, 0.0, 1.0).reshape(size, size, 3)
    seen = seen.reshape(size, size)
    alpha = hair_alpha(presence, rng, short_tips(mesh.grid, size))
    if headwear:
        rgb = synthesize_rings(colour, seen.astype(np.float32), facing.reshape(size, size), rng, config.patch)
    else:
        rgb = _synthesize_around(colour, seen.astype(np.float32), alpha > 0, rng, config.patch)
    covered = alpha > 0.5
    fraction = float((seen & covered).sum() / max(covered.sum(), 1))
    return HairTexture(np.concatenate([rgb, alpha[..., None]], -1).astype(np.float32), fraction)


def _above_forehead(pixels: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """(N,) bool: `pixels` (N, 2) in a band just above the forehead (landmark 10), a quarter of the face height
    tall and as wide as the brows: hair for nearly everyone who has hair there."""
    top, chin = landmarks_px[10, :2], landmarks_px[152, :2]
    height = float(np.linalg.norm(chin - top))
    left, right = landmarks_px[[70, 300], 0].min(), landmarks_px[[70, 300], 0].max()
    return ((pixels[:, 1] < top[1]) & (pixels[:, 1] > top[1] - 0.25 * height) & (pixels[:, 0] > left)
            & (pixels[:, 0] < right))  # fmt: skip


def hair_at(texture: HairTexture, grid: HairGrid, points: np.ndarray) -> np.ndarray:
    """(N, 4) `texture`'s colour and alpha in the directions of `points` (N, 3, head space) from the centre of
    `grid` (0 below the grid); as the hair's surface shows them in the same direction, where it follows it."""
    size = texture.rgba.shape[0]
    polar, azimuth = to_angles(points - grid.centre)
    # As in `texel_points`: u = (azimuth + pi) / 2 pi; the row = polar / (the grid's first + last polar) rows.
    # cv2's bilinear remap (pixel centres at integers: what `_sample_bilinear` does, 4x faster on many points),
    # the points laid out in rows of 1024 (its maps must be under 32767 on each side).
    width, count = 1024, len(polar)
    rows = -(-count // width)
    x, y = (np.zeros(rows * width, np.float32) for _ in range(2))
    x[:count] = (azimuth + np.pi) / (2 * np.pi) * size - 0.5
    y[:count] = polar / (grid.polar[0] + grid.polar[-1]) * size - 0.5
    rgba = cv2.remap(texture.rgba, x.reshape(rows, width), y.reshape(rows, width), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).reshape(-1, 4)[:count]  # fmt: skip
    return np.where((polar <= grid.polar[-1])[:, None], rgba, 0.0)


def soft_edged(texture: HairTexture, sigma: float) -> HairTexture:
    """`texture` with its alpha blurred by `sigma` texels (wrapping around the head), its colour blurred with
    alpha as weight where the alpha is partial (the colour outside the hair is not hair's) and kept where it is 1."""
    rgba = texture.rgba
    alpha = rgba[..., 3]
    soft = blur_around(alpha, sigma, sigma)
    colour = blur_around(rgba[..., :3] * alpha[..., None], sigma, sigma) / np.maximum(soft, 1e-6)[..., None]
    colour = np.where((alpha >= 1.0)[..., None], rgba[..., :3], colour)
    return replace(texture, rgba=np.concatenate([colour, soft[..., None]], -1).astype(np.float32))


def paint_scalp(textures: HeadTextures, head: HeadModel, verts_rest: np.ndarray, grid: HairGrid,
                 texture: HairTexture) -> HeadTextures:  # fmt: skip
    """`textures` with the hair painted on the face and head tiles where the hair covers the head: each texel
    takes the hair texture's colour in its direction from the grid's centre, in the roots' shade
    (`SCALP_ROOT_SHADE`), by that texel's alpha -- so where the photo shows hair lower than the volume may reach
    (it keeps clear of the forehead under every expression), the hairline is painted down to the photo's, its
    edge the volume's own, softened by `SCALP_EDGE_BLUR`. `verts_rest` (V, 3): the person's head at rest."""
    faces = head.topology.faces
    texture = soft_edged(texture, SCALP_EDGE_BLUR)
    # The triangles with a corner in a direction that holds hair, and their neighbours (a texel's strand tip
    # can lie in a triangle none of whose corners does); then every texel of theirs on its own.
    near = grid.radius_at_angles(*to_angles(verts_rest - grid.centre))[1] > 0
    ring = np.zeros(len(verts_rest), bool)
    ring[faces[near[faces].any(1)]] = True
    touched_faces = ring[faces].any(1)
    tiles = dict(textures.tiles)
    for material, tile in SCALP_MATERIALS.items():
        if tile not in tiles:
            continue
        tri, (rows, cols), bary = material_texels(head, material, tile, tiles[tile].shape[0])
        touched = np.flatnonzero(touched_faces[tri])
        hair = hair_at(texture, grid, _interpolate(verts_rest.astype(np.float32), faces[tri[touched]], bary[touched]))
        rows, cols, alpha = rows[touched], cols[touched], hair[:, 3:]
        image = tiles[tile].copy()
        image[rows, cols] = image[rows, cols] * (1 - alpha) + hair[:, :3] * (SCALP_ROOT_SHADE * alpha)
        tiles[tile] = image
    return replace(textures, tiles=tiles)


def scalp_roughness(own: np.ndarray, painted: np.ndarray, skin: float, size: int = SCALP_ROUGHNESS_SIZE) -> np.ndarray:
    """(size, size) uint8 roughness map (255 = 1) of a head tile for the exported material: `skin` where the tile
    is the person's `own` (S, S, 3), `SCALP_ROUGHNESS` where `paint_scalp` painted hair on it (`painted`: any hair
    within a texel of the map), with a soft edge of about one of the map's texels. Roughness changes slowly: a
    quarter of the colour's resolution is plenty (and 16 times cheaper to make and encode)."""
    own, painted = (cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in (own, painted))
    hair = (cv2.absdiff(painted, own).max(-1) > 1e-4).astype(np.float32)
    hair = cv2.GaussianBlur(hair, (0, 0), 0.7)
    return np.round((skin + (SCALP_ROUGHNESS - skin) * hair) * 255).astype(np.uint8)
