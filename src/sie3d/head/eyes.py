"""Eyes from the photo: the eyeball texture (iris detail and sclera colour sampled around MediaPipe's iris
landmarks, an anatomically sized iris with a limbal ring, a pupil and a catch-light), the eyeballs' poles
the fit meets the photo's irises with, and the eyelash cards' alpha texture.

Frames. The eye texture lives in sie3d's projected eye UVs (`sie3d.head.texture.render_layout`): a texel
(u, v) of the eye tile is the point of the eyeball whose direction from the eyeball's centre is
d = (2u - 1) side + (2v - 1) up + sqrt(1 - ...) axis, in the *eye frame* (side = head +x, up = head +y,
axis = the eyeball's forward direction, all in ICT head space). Both eyes share the texture, its iris centred
on the axis: the eyes look where the gaze shapes turn them (`sie3d.head.model.EYE_TURNS`), and the fit turns
them where the photo's irises look (`sie3d.head.fit`, `pupil_points`).

Photo samples never paint skin on the eyeball: an iris or sclera sample counts only when it lies inside the
eye opening (MediaPipe's lid contour, shrunk away from the lashes), the eye is open (lid distance over eye
width), it is not a catch-light or sclera (far brighter than the iris's median off the pupil) and not a lid
(skin-like *and* lit like the cheek under the eye: a brown iris is skin-coloured but dark, a grey one under a side
light as bright as the shaded skin); what no sample covers comes from the same ring of the other eye, then from
the ring's neighbours, then from a generic colour. The iris's colour is read where it shows best
(`iris_colour`: off the pupil, below the lid's shadow); with both eyes open, each is brought to the two eyes' mean
light.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from sie3d.face.observation import BLENDSHAPE_NAMES, FaceObservation
from sie3d.head.model import HeadModel, SurfacePointModel, rotation_matrix

# Anatomy (adult averages): horizontal visible iris diameter 11.7 mm, eyeball diameter 24 mm, a pupil of
# about 3.5 mm in indoor light; the limbal ring is the iris's dark outer rim.
IRIS_TO_EYE_WIDTH = 0.195  # iris radius over the corner-to-corner eye width (11.7 mm over about 30 mm)
IRIS_TO_EYE_WIDTH_RANGE = (0.17, 0.25)  # what a photo's own ratio may set it to (London Set: 0.21-0.22)
PUPIL_FRACTION = 0.3  # of the iris radius
LIMBAL_RING = (0.82, 1.0)  # normalised iris radius where the ring darkens toward the limbus
# Where the iris's centre lies on the eyeball, from the line of sight (degrees outward, down): on the 24 neutral
# London photos, whose people look at the camera, the fitted irises sat 4.0 degrees outward of the line from each
# eyeball's centre to the camera and 4.5 below it (`benchmarks/bench_fit.py`, "Gaze"; the anatomical angle between
# the pupil's axis and the line of sight is about 5 degrees outward).
IRIS_FROM_SIGHT_DEGREES = (4.0, 4.5)
MIN_EYE_OPENING = 0.17  # lid distance over eye width below which an eye counts as closed
MAX_BLINK = 0.5  # MediaPipe eyeBlink score above which an eye counts as closed
DEFAULT_IRIS = (0.10, 0.06, 0.035)  # linear: a mid brown, when no eye is seen open
DEFAULT_SCLERA = (0.50, 0.46, 0.43)  # linear; photographed sclera is off-white and in the lids' shade
LASH_COLOUR = (0.018, 0.014, 0.012)  # linear
POLAR_RINGS, POLAR_ANGLES = 16, 64

# MediaPipe ids per eye (subject's right, left): iris centre, its 4 rim points, the lid contour, the
# corners and the lid midpoints.
_EYES = {
    "right": {"iris": 468, "rim": (469, 470, 471, 472), "corners": (33, 133), "lids": (159, 145),
              "contour": (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
              "blink": "eyeBlinkRight"},
    "left": {"iris": 473, "rim": (474, 475, 476, 477), "corners": (263, 362), "lids": (386, 374),
             "contour": (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466),
             "blink": "eyeBlinkLeft"},
}  # fmt: skip
# The iris's own colour is read from this band of normalised radii (off the pupil, the limbal ring and the lid's
# shadow on its upper rim) and from the samples below the iris's centre.
IRIS_COLOUR_BAND = (0.4, 0.85)
LID_LIGHT = 0.6  # a skin-coloured sample brighter than this x the cheek under its eye is a lid, not the iris
_ICT_EYE = {"right": "Right", "left": "Left"}
# MediaPipe ids of the cheek just under each eye (mirror pairs): the light that falls on that eye.
_UNDER_EYE = {"right": (118, 119, 101, 50), "left": (347, 348, 330, 280)}


@dataclass(frozen=True)
class EyeGeometry:
    """One ICT eyeball in head space (cm): centre, unit forward axis, the eye frame's side and up."""

    centre: np.ndarray  # (3,)
    axis: np.ndarray  # (3,)
    side: np.ndarray  # (3,)
    up: np.ndarray  # (3,)
    vertices: np.ndarray  # (N,) vertex ids of sclera + iris
    # The eye UVs' radius (sine of the angle from the axis, seen from `centre`) against the distance from the
    # axis in cm, over the front vertices, increasing: ICT's cornea bulges, so the two are not proportional.
    uv_radius_by_offset: tuple[np.ndarray, np.ndarray]


@lru_cache(maxsize=4)
def eye_geometry(head: HeadModel) -> dict[str, EyeGeometry]:
    """{"right", "left"}: the eyeballs of the neutral head, looking ahead (the gaze shapes turn them about
    `centre`: `sie3d.head.model.EYE_TURNS`)."""
    topo, neutral = head.topology, head.neutral.numpy()
    out = {}
    for eye, ict in _ICT_EYE.items():
        verts = np.unique(topo.faces[topo.faces_of(f"M_Sclera{ict}", f"M_Iris{ict}")])
        centre, axis = eye_axis(head, eye)
        side = np.cross([0.0, 1.0, 0.0], axis)
        side /= np.linalg.norm(side)
        rel = neutral[verts] - centre
        front = rel @ axis > 0
        along = (rel @ axis)[front]
        offset = np.linalg.norm(rel[front] - along[:, None] * axis, axis=1)
        uv_radius = offset / np.linalg.norm(rel[front], axis=1)
        order = np.argsort(offset)
        table = (offset[order], np.maximum.accumulate(uv_radius[order]))
        out[eye] = EyeGeometry(centre, axis, side, np.cross(axis, side), verts, table)
    return out


def eye_axis(head: HeadModel, eye: str) -> tuple[np.ndarray, np.ndarray]:
    """The mean head's eyeball `eye` ("right" or "left"): the centre the gaze shapes turn it about
    (`HeadModel.eyeball_centres`) and the unit direction of its iris when it looks straight ahead, head +z turned
    outward and down by `IRIS_FROM_SIGHT_DEGREES`. (ICT's own iris vertices do not give it: their mesh also wraps
    behind the eyeball, so their mean pointed 10 degrees outward and 8 down.)"""
    with torch.no_grad():
        centre = head.eyeball_centres(head.neutral[None])[0, 0 if eye == "left" else 1].numpy()
    outward, down = IRIS_FROM_SIGHT_DEGREES
    turn = rotation_matrix((0.0, 1.0, 0.0), outward if eye == "left" else -outward)  # about +y: toward +x
    return centre, turn @ rotation_matrix((1.0, 0.0, 0.0), down) @ np.array([0.0, 0.0, 1.0])  # about +x: down


@lru_cache(maxsize=4)
def pupil_surface(head: HeadModel) -> tuple[np.ndarray, np.ndarray]:
    """Where each eyeball's axis leaves its surface, the subject's right eye first -- the centre of the painted
    iris: (2,) triangle ids and (2, 3) barycentrics on the neutral head (the outermost crossing of the ray from
    the eyeball's centre along its axis)."""
    topo, neutral = head.topology, head.neutral.numpy().astype(np.float64)
    tris, barys = [], []
    for eye, geometry in eye_geometry(head).items():
        ids = topo.faces_of(f"M_Sclera{_ICT_EYE[eye]}", f"M_Iris{_ICT_EYE[eye]}")
        a, b, c = (neutral[topo.faces[ids, k]] for k in range(3))
        e1, e2 = b - a, c - a
        p = np.cross(geometry.axis, e2)
        det = (e1 * p).sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_vec = geometry.centre - a
            u = (t_vec * p).sum(1) / det
            q = np.cross(t_vec, e1)
            v = (q @ geometry.axis) / det
            t = (e2 * q).sum(1) / det
        hit = (np.abs(det) > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        k = np.flatnonzero(hit)[np.argmax(t[hit])]
        tris.append(ids[k])
        barys.append([1 - u[k] - v[k], u[k], v[k]])
    return np.array(tris), np.array(barys, np.float32)


def pupil_points(head: HeadModel, identity: np.ndarray | Tensor | None = None) -> SurfacePointModel:
    """The painted irises' centres (`pupil_surface`) as a linear model of the rig: they move with the identity
    and turn with the gaze shapes about the eyeballs' centres of `identity` (100,) (the mean head's without)."""
    tri, bary = pupil_surface(head)
    corners = torch.from_numpy(head.topology.faces[tri])  # (2, 3)
    weights = torch.from_numpy(bary)[..., None]  # (2, 3, 1)

    def at_pupils(per_vertex: Tensor) -> Tensor:  # (K, V, 3) -> (K, 2 * 3)
        return (per_vertex[:, corners] * weights).sum(2).reshape(len(per_vertex), -1)

    with torch.no_grad():
        deltas = head.expression_deltas(identity, lids=False)
    return SurfacePointModel(neutral=at_pupils(head.neutral[None]).reshape(2, 3),
                             identity_basis=at_pupils(head.identity_basis.reshape(-1, head.n_verts, 3)),
                             expression_basis=at_pupils(deltas))  # fmt: skip


# -- what the photo shows of the eyes ------------------------------------------------------------------


def eye_opening(landmarks_px: np.ndarray, eye: str | None = None) -> float:
    """MediaPipe's upper-to-lower lid distance (the lids' middles) over the eye's width (corner to corner), of
    `eye` ("left" or "right", the subject's; None: the mean of both) in `landmarks_px` (N >= 468, 2 or 3) px."""
    if eye is None:
        return float(np.mean([eye_opening(landmarks_px, side) for side in _EYES]))
    ids, lm = _EYES[eye], landmarks_px[:, :2]
    width = np.linalg.norm(lm[ids["corners"][0]] - lm[ids["corners"][1]])
    return float(np.linalg.norm(lm[ids["lids"][0]] - lm[ids["lids"][1]]) / max(width, 1e-6))


def eye_open(obs: FaceObservation, eye: str) -> bool:
    """Whether the photo shows this eye open enough to sample its iris and sclera."""
    blink = float(obs.blendshapes[BLENDSHAPE_NAMES.index(_EYES[eye]["blink"])])
    return bool(eye_opening(obs.landmarks_px, eye) >= MIN_EYE_OPENING and blink <= MAX_BLINK)


@dataclass(frozen=True)
class EyeSamples:
    """Iris detail in polar form and the sclera colour, as the photo shows them (linear RGB)."""

    iris: np.ndarray  # (POLAR_RINGS, POLAR_ANGLES, 3): ring = normalised radius, angle from head +x to +y
    iris_seen: np.ndarray  # (POLAR_RINGS, POLAR_ANGLES) bool: sampled from the photo (else filled)
    sclera: np.ndarray  # (3,)
    sclera_seen: bool
    iris_to_eye_width: float  # the photo's iris radius over its eye width (IRIS_TO_EYE_WIDTH if unseen)


def sample_eyes(photo_linear: np.ndarray, obs: FaceObservation, skin_photo: np.ndarray) -> EyeSamples:
    """Iris detail and sclera colour from the photo's open eyes; `skin_photo` (N, 3): linear photo colours of
    the face's skin, to reject samples that look like skin (a lid, a squint, a reflection on glasses). Each eye's
    iris is brought to the two eyes' mean light, measured on the cheek under each (a side light leaves one eye in
    shadow)."""
    from sie3d.head.texture import _sample_bilinear, _skin_like, polygon_mask

    height, width = photo_linear.shape[:2]
    lm = obs.landmarks_px[:, :2].astype(np.float64)
    rho = (np.arange(POLAR_RINGS) + 0.5) / POLAR_RINGS
    phi = np.arange(POLAR_ANGLES) * 2 * np.pi / POLAR_ANGLES
    irises, levels = [], []  # per eye: (polar colours, valid), the light on the cheek under it
    sclera_samples, ratios = [], []
    ex = lm[263] - lm[33]  # head +x in the image (the subject's right eye to left eye)
    ex /= np.linalg.norm(ex)
    ey = np.array([ex[1], -ex[0]])  # head +y (up) in the image
    for eye, ids in _EYES.items():
        if not eye_open(obs, eye):
            continue
        centre = lm[ids["iris"]]
        radius = float(np.mean([np.linalg.norm(lm[i] - centre) for i in ids["rim"]]))
        if radius < 1.5:  # an iris a few pixels across holds no detail worth sampling
            continue
        contour = lm[list(ids["contour"])]
        x0, y0 = np.floor(contour.min(0)).astype(int) - 2
        x1, y1 = np.ceil(contour.max(0)).astype(int) + 3
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        ratios.append(radius / max(float(np.linalg.norm(lm[ids["corners"][0]] - lm[ids["corners"][1]])), 1e-6))
        opening = polygon_mask(contour - [x0, y0], (x1 - x0, y1 - y0), shrink=0.12)  # off the lid margins
        # Iris: polar samples, valid inside the opening, neither a catch-light nor lit skin.
        offsets = rho[:, None, None] * radius * (np.cos(phi)[None, :, None] * ex + np.sin(phi)[None, :, None] * ey)
        points = (centre + offsets).reshape(-1, 2)
        colours = _sample_bilinear(photo_linear, points + 0.5)
        px = np.round(points - [x0, y0]).astype(int)
        inside = (px[:, 0] >= 0) & (px[:, 0] < x1 - x0) & (px[:, 1] >= 0) & (px[:, 1] < y1 - y0)
        valid = inside.copy()
        valid[inside] = opening[px[inside, 1], px[inside, 0]]
        luminance = colours.mean(1)
        level = _cheek_light(photo_linear, lm, eye)
        # Catch-lights and sclera: far brighter than the iris's median, off the pupil (`IRIS_COLOUR_BAND`). Skin (a
        # lid): skin-like and lit like the cheek, as an iris never is (a brown iris's colour is skin-like, at a
        # fraction of the skin's light; a grey or green one under a side light is as bright as the shaded skin).
        in_band = valid & np.repeat((rho >= IRIS_COLOUR_BAND[0]) & (rho <= IRIS_COLOUR_BAND[1]), POLAR_ANGLES)
        reference = in_band if in_band.sum() >= 8 else valid
        if reference.sum() >= 8:
            valid &= luminance <= 2.5 * np.median(luminance[reference]) + 1e-4
        valid &= ~((luminance > LID_LIGHT * level) & _skin_like(colours, skin_photo))
        irises.append((colours, valid))
        levels.append(level)
        # Sclera: pixels of the opening outside 1.2 iris radii, the brighter half (the rest is lash shadow).
        ys, xs = np.nonzero(opening)
        pixels = np.stack([xs + x0, ys + y0], -1).astype(np.float64)
        outside = np.linalg.norm(pixels - centre, axis=1) > 1.2 * radius
        if outside.sum() >= 6:
            candidates = photo_linear[pixels[outside, 1].astype(int), pixels[outside, 0].astype(int)]
            # the sclera is nearly colourless: lids, lashes and the caruncle are not
            saturation = (candidates.max(1) - candidates.min(1)) / np.maximum(candidates.max(1), 1e-5)
            candidates = candidates[~_skin_like(candidates, skin_photo) & (saturation < 0.35)]
            if len(candidates) >= 4:
                lum = candidates.mean(1)  # between the lash shadow and the glare (catch-lights, glasses)
                band = (lum >= np.percentile(lum, 40)) & (lum <= np.percentile(lum, 85))
                sclera_samples.append(candidates[band])
    iris_sum = np.zeros((POLAR_RINGS * POLAR_ANGLES, 3))
    iris_count = np.zeros(POLAR_RINGS * POLAR_ANGLES)
    mean_level = float(np.exp(np.mean(np.log(np.maximum(levels, 1e-5))))) if levels else 1.0
    for (colours, valid), level in zip(irises, levels, strict=True):
        gain = float(np.clip(mean_level / max(level, 1e-5), 0.5, 2.0))
        iris_sum += colours * gain * valid[:, None]
        iris_count += valid
    seen = (iris_count > 0).reshape(POLAR_RINGS, POLAR_ANGLES)
    iris = (iris_sum / np.maximum(iris_count, 1)[:, None]).reshape(POLAR_RINGS, POLAR_ANGLES, 3)
    iris = _fill_polar(iris, seen)
    if sclera_samples:
        sclera, sclera_seen = np.median(np.concatenate(sclera_samples), axis=0), True
    else:
        sclera, sclera_seen = np.asarray(DEFAULT_SCLERA), False
    ratio = float(np.clip(np.mean(ratios), *IRIS_TO_EYE_WIDTH_RANGE)) if ratios else IRIS_TO_EYE_WIDTH
    return EyeSamples(iris.astype(np.float32), seen, np.asarray(sclera, np.float32), sclera_seen, ratio)


def _cheek_light(photo_linear: np.ndarray, lm: np.ndarray, eye: str) -> float:
    """The light on the cheek just under `eye`: the median of the mean of R, G and B over 3 x 3 px around each of
    its `_UNDER_EYE` landmarks in `lm` (N, 2) px."""
    from sie3d.head.texture import _sample_bilinear

    around = lm[list(_UNDER_EYE[eye])][:, None] + np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1]), -1).reshape(1, 9, 2)
    return float(np.median(_sample_bilinear(photo_linear, around.reshape(-1, 2) + 0.5).mean(1)))


def _fill_polar(iris: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Unseen polar texels take their ring's median; rings never seen take the nearest seen ring's; with no
    sample at all, the generic iris colour."""
    if not seen.any():
        return np.broadcast_to(np.asarray(DEFAULT_IRIS), iris.shape).copy()
    ring_colour = np.full((iris.shape[0], 3), np.nan)
    for r in range(iris.shape[0]):
        if seen[r].any():
            ring_colour[r] = np.median(iris[r, seen[r]], axis=0)
    seen_rings = np.flatnonzero(~np.isnan(ring_colour[:, 0]))
    for r in range(iris.shape[0]):
        if np.isnan(ring_colour[r, 0]):
            ring_colour[r] = ring_colour[seen_rings[np.argmin(np.abs(seen_rings - r))]]
    return np.where(seen[..., None], iris, ring_colour[:, None, :])


# -- the eye texture --------------------------------------------------------------------------------


def iris_colour(iris: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(3,) the iris's own colour in polar samples `iris` (R, A, 3) of which `seen` (R, A) come from the photo: the
    median of the seen samples in `IRIS_COLOUR_BAND` below the iris's centre (the upper rim lies in the lid's
    shadow, the middle is pupil); of the whole seen band when too few are seen there; of all the samples (the
    filled ones too) when too few are seen in the band."""
    rho = (np.arange(iris.shape[0]) + 0.5) / iris.shape[0]
    phi = np.arange(iris.shape[1]) * 2 * np.pi / iris.shape[1]
    band = ((rho >= IRIS_COLOUR_BAND[0]) & (rho <= IRIS_COLOUR_BAND[1]))[:, None]
    for where in (band & (np.sin(phi) < 0)[None] & seen, band & seen):
        if where.sum() >= 8:
            return np.median(iris[where], axis=0)
    return np.median(iris.reshape(-1, 3), axis=0)


def _iris_albedo(iris: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Photo iris colours -> albedo at the photo's exposure (as the skin's albedo is): the iris's own colour
    (`iris_colour`) kept within the range of real eye colours, the detail kept as a bounded ratio to it."""
    colour = iris_colour(iris, seen)
    level = float(colour.mean())
    hue = colour / max(level, 1e-5)
    # Very dark irises are dark brown (their measured hue is noise and the skin's light): lean to brown.
    brown = np.array([1.45, 0.95, 0.6])
    dark = float(np.clip((0.03 - level) / 0.02, 0.0, 1.0))
    hue = (0.8 * hue + 0.2) * (1 - dark) + brown * dark
    target = hue * np.clip(level, 0.012, 0.35)
    ratio = np.clip(iris.mean(-1, keepdims=True) / max(level, 1e-5), 0.45, 1.8)
    chroma = iris / np.maximum(iris.mean(-1, keepdims=True), 1e-5)
    chroma = 0.7 + 0.3 * np.clip(chroma, 0.4, 1.8)  # the detail's own hue, softened
    return np.clip(target * ratio * chroma / chroma.reshape(-1, 3).mean(0), 0.0, 1.0)


def _sclera_albedo(sclera: np.ndarray) -> np.ndarray:
    """Sclera colour -> albedo at the photo's exposure: nearly neutral (at most a little warm), luminance
    within [0.15, 0.42] (the photographed sclera sits in the lids' shade, which the renderer does not cast;
    brighter reads as a stare)."""
    lum = float(sclera.mean())
    colour = 0.25 * sclera + 0.75 * lum
    colour = colour / max(lum, 1e-5) * np.clip(lum, 0.15, 0.42)
    return np.clip(colour, 0.0, 1.0)


def eye_texture(samples: EyeSamples, head: HeadModel, size: int, eye_width_cm: float,
                highlight: tuple[float, float, float] = (0.3, 0.4, 1.0)) -> np.ndarray:
    """(size, size, 3) linear albedo of the eye tile: sclera, iris (photo detail, anatomical size, limbal
    ring), pupil and a catch-light, the iris centred on the eyeball's axis (the gaze shapes turn the eyeball:
    `sie3d.head.model.EYE_TURNS`) and as wide relative to the avatar's eye width `eye_width_cm` (corner to
    corner) as the photo's iris is. `highlight`: head-space
    direction of the key light; the catch-light sits where the eyeball reflects it toward a frontal viewer
    (fixed on the eyeball, not on the iris, as a reflection is)."""
    geometry = eye_geometry(head)["left"]
    offsets, uv_radii = geometry.uv_radius_by_offset
    iris_angle = np.arcsin(min(float(np.interp(samples.iris_to_eye_width * eye_width_cm, offsets, uv_radii)), 0.9))
    grid = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(grid, 1.0 - grid)
    x, y = 2 * u - 1, 2 * v - 1
    z = np.sqrt(np.clip(1 - x * x - y * y, 0.0, 1.0))
    d = np.stack([x, y, z], -1)
    rho = np.arccos(np.clip(z, -1, 1)) / iris_angle  # normalised iris radius
    phi = np.mod(np.arctan2(y, x), 2 * np.pi)

    iris_polar = _iris_albedo(samples.iris, samples.iris_seen)
    ring_index = np.clip(rho * POLAR_RINGS - 0.5, 0, POLAR_RINGS - 1)
    angle_index = phi / (2 * np.pi) * POLAR_ANGLES
    r0, a0 = np.floor(ring_index).astype(int), np.floor(angle_index).astype(int) % POLAR_ANGLES
    r1, a1 = np.minimum(r0 + 1, POLAR_RINGS - 1), (a0 + 1) % POLAR_ANGLES
    fr, fa = (ring_index - r0)[..., None], (angle_index - np.floor(angle_index))[..., None]
    iris = ((iris_polar[r0, a0] * (1 - fa) + iris_polar[r0, a1] * fa) * (1 - fr)
            + (iris_polar[r1, a0] * (1 - fa) + iris_polar[r1, a1] * fa) * fr)  # fmt: skip
    # Radial fibres: a faint angular modulation, so a flat photo colour does not read as painted.
    iris = iris * (1.0 + 0.08 * np.sin(37 * phi + 5 * rho)[..., None] * np.clip(rho, 0, 1)[..., None])
    ring = np.clip((rho - LIMBAL_RING[0]) / (LIMBAL_RING[1] - LIMBAL_RING[0]), 0, 1)[..., None]
    iris = iris * (1.0 - 0.6 * ring**1.5)
    pupil = np.clip((rho - PUPIL_FRACTION) / 0.06 + 0.5, 0, 1)[..., None]  # soft edge
    iris = np.asarray([0.008, 0.008, 0.009]) * (1 - pupil) + iris * pupil

    sclera = _sclera_albedo(samples.sclera)
    radius = np.hypot(x, y)
    # Toward the eyeball's rim the sclera lies under the lids' shade and turns a little pink near the corners.
    rim = np.clip((radius - np.sin(iris_angle)) / (1 - np.sin(iris_angle)), 0, 1)[..., None]
    # The lids' shade: strongest under the upper lid and toward the corners, where the lids meet the eyeball.
    lid_shade = (1.0 - 0.5 * np.clip((y - 0.1) / 0.4, 0, 1)) * (1.0 - 0.45 * np.clip((np.abs(x) - 0.4) / 0.5, 0, 1))
    sclera_map = sclera * (1.0 - 0.4 * rim) * lid_shade[..., None]
    sclera_map = sclera_map * (1 - 0.25 * rim) + np.asarray([0.45, 0.25, 0.22]) * sclera.mean() * 0.25 * rim
    blend = np.clip((rho - 1.0) / 0.08, 0, 1)[..., None]  # the limbus blends over a narrow band
    texture = iris * (1 - blend) + sclera_map * blend

    light = np.asarray(highlight, np.float64) / np.linalg.norm(highlight)
    half = light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    frame = np.stack([geometry.side, geometry.up, geometry.axis])
    spot = frame @ half
    glint = np.exp(-((d - spot) ** 2).sum(-1) / (2 * 0.035**2))[..., None]
    texture = texture * (1 - 0.85 * glint) + 0.95 * glint
    return np.clip(texture, 0.0, 1.0).astype(np.float32)


# -- eyelash cards ---------------------------------------------------------------------------------


def lash_texture(head: HeadModel, size: int, seed: int = 0) -> np.ndarray:
    """(size, size, 4) linear RGB + alpha of ICT's eyelash tile (6): dark tapered strands on each card, from
    the card's root edge (the one nearer the eyeball) toward its tip, denser and longer toward the outer
    corner, and none on the drooping end of the card beyond it. The lower lids' cards stay empty: short,
    sparse lower lashes read as specks once alpha-tested at preview size. Alpha is 0 or 1 (alpha-tested
    cards)."""
    from sie3d.head.texture import material_parts

    topo, neutral = head.topology, head.neutral.numpy()
    tris = topo.faces_of("M_EyeLashes")
    faces = topo.faces[tris]
    label = material_parts(head, "M_EyeLashes")
    eyes = eye_geometry(head)
    rng = np.random.default_rng(seed)
    alpha = Image.new("L", (size * 4, size * 4), 0)  # drawn at 4x, then reduced: smooth strand edges
    draw = ImageDraw.Draw(alpha)
    for card in np.unique(label[faces[:, 0]]):
        card_tris = tris[label[faces[:, 0]] == card]
        uv_ids = np.unique(topo.uv_faces[card_tris])
        uv = topo.uvs[uv_ids] - [6.0, 0.0]  # tile 6 (`sie3d.head.texture.LASH_TILE`) to the unit square
        vert_ids = np.unique(topo.faces[card_tris])
        points = neutral[vert_ids]
        eye = eyes["left" if points[:, 0].mean() > 0 else "right"]
        if points[:, 1].mean() < eye.centre[1] - 0.3:  # a lower lid's card (upper ones near y = 3.7, lower 2.9)
            continue
        (u0, v0), (u1, v1) = uv.min(0), uv.max(0)
        # Which v edge is the root: the card's vertices nearer the eyeball centre, by their v.
        vert_uv = _vertex_uvs(topo, card_tris)
        dist = {k: np.linalg.norm(neutral[k] - eye.centre) for k in vert_uv}
        vs = np.array([vert_uv[k][1] for k in vert_uv])
        ds = np.array([dist[k] for k in vert_uv])
        root_at_v0 = np.corrcoef(vs, ds)[0, 1] > 0  # distance grows with v: the root is at v0
        # u runs along the lid; which end is the outer corner (larger |x|)
        us = np.array([vert_uv[k][0] for k in vert_uv])
        xs = np.array([abs(neutral[k][0]) for k in vert_uv])
        outer_at_u1 = np.corrcoef(us, xs)[0, 1] > 0
        for _ in range(80):
            # Position along the lid, 1 = the card's outer end. The cards reach past the outer corner of the eye and
            # droop there: strands on that last fifth fanned down and out beyond the eye like a false-lash wing.
            t = 0.8 * rng.beta(1.6, 1.2)
            along = u0 + (t if outer_at_u1 else 1 - t) * (u1 - u0)
            length = (0.65 + 0.3 * t) * rng.uniform(0.8, 1.0)
            lean = (0.15 * (t - 0.3) + rng.normal(0, 0.03)) * (1 if outer_at_u1 else -1)
            steps = 8
            root_v, tip_sign = (v0, 1) if root_at_v0 else (v1, -1)
            path = []
            for s in range(steps + 1):
                f = s / steps
                uu = along + lean * (v1 - v0) * f * f * 2
                vv = root_v + tip_sign * length * (v1 - v0) * f
                path.append((uu * size * 4, (1 - vv) * size * 4))
            for s in range(steps):
                w = max(1, round(size * 4 * 0.007 * (1 - 0.7 * s / steps) + 1))
                draw.line([path[s], path[s + 1]], fill=255, width=w)
    small = np.asarray(alpha.resize((size, size), Image.BOX), np.float32) / 255.0
    rgba = np.zeros((size, size, 4), np.float32)
    rgba[..., :3] = LASH_COLOUR
    rgba[..., 3] = (small >= 0.35).astype(np.float32)
    return rgba


def _vertex_uvs(topo, tris: np.ndarray) -> dict[int, np.ndarray]:
    """{vertex id: its UV (tile offset removed)} over triangles `tris` (a vertex's first UV corner)."""
    out = {}
    for corners, uv_corners in zip(topo.faces[tris], topo.uv_faces[tris], strict=True):
        for k in range(3):
            out.setdefault(int(corners[k]), topo.uvs[uv_corners[k]] - [6.0, 0.0])
    return out


# -- the lids' shade on the eyeball ------------------------------------------------------------------------


def eye_shade_texture(size: int) -> np.ndarray:
    """(size, size, 4) RGBA of ICT's eye-occlusion shell (the thin shell over each eye opening, UVs in the unit
    square): black, with alpha the share of light the lids take away -- strongest under the upper lid (the
    shell's upper rows, v > 0.6; the shell's middle line is near v = 0.5), less along the lower lid
    (v < 0.4) and toward the corners. The shell moves
    with the lids, so the shade follows every expression; the renderer multiplies what it covers by
    1 - alpha (`sie3d.previews.TexturedHead`), and a glTF viewer blends it (alphaMode BLEND)."""
    grid = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(grid, 1.0 - grid)
    upper = np.clip((v - 0.6) / 0.3, 0.0, 1.0)
    lower = np.clip((0.4 - v) / 0.3, 0.0, 1.0)
    corner = np.clip((np.abs(u - 0.5) - 0.35) / 0.15, 0.0, 1.0)
    alpha = 1.0 - (1.0 - 0.6 * upper**1.2) * (1.0 - 0.35 * lower**1.5) * (1.0 - 0.4 * corner)
    rgba = np.zeros((size, size, 4), np.float32)
    rgba[..., 3] = alpha
    return rgba
