"""Photo + face landmarks -> which pixels are the person's hair (`HairMask`).

No package ships face-parsing or hair-segmentation weights (see the design brief), so the mask is built from
what does ship and from the photo itself:

1. **Person segmentation** (`sie3d.hair.segmentation`): MediaPipe's selfie segmentation model run through
   sie3d's own .tflite -> torch converter, on a square crop around the head (`head_crop`) framed roughly as a
   selfie, 384 px wide (a face is 120 px high in it).
2. **Where hair can be**, from the 478 landmarks: the face oval (grown by 3 % of the face height) and a neck
   column between the jaw corners are never hair -- except a **fringe**: hair over the forehead, down to a
   little above the brows, kept where it is a band of the hair's colour joined to the rest of the hair (not a
   wisp at the hairline, not skin in another light: a shaded forehead or a highlight on it); hair is seeded in
   a scalp zone, an ellipse over the upper head above the ears, never on the forehead.
3. **A colour + texture model per photo** (`classify_hair`): every pixel is described by CIE Lab (L, a, b)
   and the log of the local standard deviation of L over 5x5 pixels (strands are texture, skin is smooth); a
   grayscale photo keeps L and the texture only. Gaussian classes are fitted to seeds from the photo itself:
   skin on the cheeks (and on the forehead when it agrees with the cheeks), hair in the scalp zone where a
   pixel is far from the skin and is not `shaded_skin` (a lit scalp or forehead is lighter than the cheeks but
   has their hue), clothes below the chin (without it hair leaked into dark or sparkly clothes), the
   background around the head in four colour clusters (competing below the ears only) and a flat "anything
   else" density; the person probability is the prior of the person's classes against the background's. A
   spatial log prior makes hair less likely below the ears and far to the sides and more likely high on the
   crown. The hair posterior times the person probability, kept where a connected region holds hair seeds
   and reaches the person's outline (a patch of forehead does not), is the mask. Near the face oval, skin in
   shadow (`skin_in_shadow`: the skin's hue and smoothness, darker than the cheeks) is neither a hair seed nor
   hair: a forehead or temple the light falls off from passed for hair before.
4. **Verdicts** (`bald_verdict`, colour and size checks): a crown that is mostly skin, or smooth, not darker
   than the skin and only partly unlike it, is ``kind="bald"`` with an empty mask; vivid or unnatural colours,
   two tones far apart (a cap's dark band under its white crown) or a region far larger than hair covers make it
   ``"headwear-or-hair"`` (headwear stays in the mask: it is treated as hair); no crown in the photo at all gives
   ``"unknown"``.

`HairMask.mask` is a float (H, W) image in [0, 1] at the photo's resolution; ``confidence`` and ``notes`` say
how far to trust it. Only hair of the chosen face's person is looked for: the photo's other faces' heads are
left out (`other_heads`: the segmentation takes a group for one person, a neighbour's hair or headscarf for
ours). Every threshold is a field of
`HairMaskConfig`; they were set by looking at the contact sheet of the 79 shared photos, not learned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from sie3d.errors import UsageError
from sie3d.face.observation import N_LANDMARKS, FaceObservation
from sie3d.hair.segmentation import SEGMENTATION_ASSET, PersonSegmenter
from sie3d.head.fit import BROWS, FACE_OVAL
from sie3d.head.texture import polygon_mask

__all__ = ["KINDS", "SEGMENTATION_ASSET", "HairMask", "HairMaskConfig", "PersonSegmenter", "classify_hair",
           "hair_mask", "hair_mask_debug", "head_crop", "other_heads"]

# MediaPipe face-mesh landmark ids ("left"/"right" = the subject's own sides).
FOREHEAD, CHIN = 10, 152
CHEEKS = (50, 280, 117, 346, 118, 347)  # upper cheeks, below the eyes: skin on bearded faces too
FOREHEAD_SKIN = (151, 108, 337)  # the forehead's centre and its two sides, above the brows
EAR_LEVEL = (234, 454)  # the face outline at the ears' height (tragus), right and left
JAW_CORNERS = (172, 397)

KINDS = ("hair", "bald", "headwear-or-hair", "unknown")


@dataclass(frozen=True)
class HairMaskConfig:
    """Settings of the hair mask. Lengths are in face heights (landmark 10 on the forehead to 152 on the chin,
    measured in the photo); the defaults were set by looking at contact sheets of the shared photo set
    (``scripts/hair_mask_sheet.py``), not learned."""

    crop_side: float = 3.2  # side of the square head crop
    crop_above: float = 0.9  # the crop starts this far above the forehead landmark
    work_size: int = 384  # crop side in pixels for the colour model (a face is 120 px high at 3.2)
    person_threshold: float = 0.5  # person probability above which a pixel belongs to the person
    texture_window: int = 5  # pixels (at work_size) of the local standard deviation of L
    face_margin: float = 0.03  # the face oval grown by this much is never hair (nor a hair seed) ...
    fringe_clearance: float = 0.04  # ... except a fringe: hair over the forehead, ending this far above the brows ...
    fringe_width: float = 0.08  # ... whose parts narrower than this are dropped (a hairline's wisps, a shadow) ...
    fringe_lightness: float = 10.0  # ... and, where hair and skin differ by this much lightness (L), on the hair's side
    skin_seed_radius: float = 0.05  # discs around the cheek landmarks
    scalp_width: float = 0.95  # half width of the scalp zone (an ellipse around the upper head)
    scalp_height: float = 1.0  # half height of that ellipse ...
    scalp_centre: float = 0.35  # ... centred this far below the forehead landmark
    forehead_gate: float = 5.0  # forehead pixels this close to the cheek model are skin (a fringe is not)
    far_from_skin: float = 3.5  # Mahalanobis distance to the skin model beyond which a pixel seeds hair/clothes
    hair_trim: float = 4.0  # hair and clothes seeds farther than this from their first fit are dropped
    clothes_below_chin: float = 0.3  # clothes seeds start this far below the chin
    clothes_half_width: float = 0.6  # ... within this far of the face's centre line
    clothes_from_skin: float = 1.5  # ... and this many times ``far_from_skin`` from the skin model
    outline_reach: float = 0.06  # kept hair must come this close to the person's outline
    person_floor: float = 0.02  # the person probability is clipped to [this, 1 - this] as a prior
    background_below: float = 0.2  # background seeds: person probability below this, around the head ...
    background_clusters: int = 4  # ... in this many colour clusters ...
    background_reach: float = 1.6  # ... within the scalp ellipse scaled by this
    outlier_distance: float = 4.0  # Mahalanobis distance to the hair model beyond which "other" beats hair
    hair_prior_slope: float = 2.0  # hair's log prior falls by this per face height below the ears / to the side
    hair_half_width: float = 0.8  # ... beyond this far from the face's centre line
    crown_prior: float = 1.5  # hair's log prior gains this much in the scalp zone ...
    crown_above: float = 0.3  # ... this far above the forehead landmark
    min_seed_fraction: float = 0.01  # a class needs seeds covering this fraction of face height squared
    crown_inset: float = 0.05  # the crown band keeps this far from the outline (edges look like texture)
    shade_darker: float = 5.0  # L units: "shaded skin" is at most this much darker than the cheeks (see shaded_skin)
    shade_hue_deg: float = 8.0  # ... and within this hue angle of them toward yellow ...
    flush_hue_deg: float = 20.0  # ... or this one toward red (skin_tone)
    shadow_band: float = 0.2  # skin's hue, however dark, this close around the face oval is skin (skin_in_shadow) ...
    shadow_min_width: float = 0.03  # ... in patches at least this wide
    bald_fraction: float = 0.2  # bald below this fraction of hair evidence in the crown (see bald_verdict)
    bald_fraction_smooth: float = 0.45  # ... or below this one when the crown is smooth and not darker
    bald_texture_ratio: float = 1.4  # "smooth": median crown texture below this times the skin's
    headwear_fraction: float = 0.3  # "headwear-or-hair" above this fraction of unnatural hair colours
    headwear_vivid: float = 0.08  # ... or above this fraction of vivid ones (see VIVID_CHROMA)
    headwear_two_tone: float = 45.0  # ... or when its lightness quartiles lie this many L units apart (two tones)
    two_tone_min_area: float = 0.1  # ... judged on regions of at least this many face heights squared
    max_hair_area: float = 2.0  # ... or when the mask covers more than this many face heights squared
    gray_chroma: float = 4.0  # a photo whose 99th-percentile chroma (Lab) is below this is grayscale
    covariance_floor: float = 1.0  # added to every class covariance's diagonal (feature units squared)
    neck_margin: float = 0.0  # the neck column is the jaw-corner span widened by this much each side
    smooth_sigma: float = 1.0  # pixels (at work_size) of the final mask's Gaussian smoothing
    other_head_margin: float = 1.15  # a pixel nearer another face's head than this times our head's is theirs

    def __post_init__(self) -> None:
        if (self.work_size < 64 or self.crop_side <= 0 or not 0 < self.person_threshold < 1
                or self.other_head_margin < 1):
            raise ValueError(f"invalid HairMaskConfig: {self}")


@dataclass(frozen=True)
class HairMask:
    """The hair of one face in one photo.

    ``mask`` (H, W) float32 in [0, 1], photo resolution: probability-like weight of hair (headwear included).
    ``confidence`` in [0, 1]: how clearly hair and skin separated (see `classify_hair`). ``kind`` is one of
    `KINDS`. ``notes`` are human-readable sentences for a report. ``timings`` are seconds per step. ``opaque``:
    the region is headwear because of a vivid colour or two tones no hair has (a hat: opaque, with colours of its
    own), not only because of dyed-looking colours or its size (`headwear_verdict`).
    """

    mask: np.ndarray
    confidence: float
    kind: str
    notes: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    opaque: bool = False

    @property
    def coverage(self) -> float:
        """Fraction of the photo's pixels that are hair (mask > 0.5)."""
        return float((self.mask > 0.5).mean())

    def summary(self) -> dict:
        """JSON-safe description for a report (everything but the mask itself)."""
        return {"kind": self.kind, "opaque": self.opaque, "confidence": round(self.confidence, 3),
                "coverage": round(self.coverage, 4), "notes": list(self.notes),
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


# -- the head crop ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadCrop:
    """A square crop of the photo around the head, upright in the face's own frame.

    ``matrix`` (2, 3) maps photo pixels (x, y) to crop pixels; ``size`` is the crop side in pixels;
    ``face_px`` the face height (landmark 10 -> 152) in crop pixels.
    """

    matrix: np.ndarray
    size: int
    face_px: float

    @property
    def inverse(self) -> np.ndarray:
        """(2, 3) crop pixels -> photo pixels."""
        return cv2.invertAffineTransform(self.matrix)

    def to_crop(self, points_px: np.ndarray) -> np.ndarray:
        """(N, 2) photo pixels -> (N, 2) crop pixels."""
        return points_px[:, :2] @ self.matrix[:, :2].T + self.matrix[:, 2]


def head_crop(landmarks_px: np.ndarray, config: HairMaskConfig = HairMaskConfig()) -> HeadCrop:
    """The `HeadCrop` of a face from its (478, >=2) landmarks in photo pixels.

    The face's "down" is the direction forehead (10) -> chin (152); the crop is ``crop_side`` face heights
    wide, centred on that line, and starts ``crop_above`` face heights above the forehead landmark, so that
    it holds the head, the hair and the shoulders the way a selfie does.
    """
    top, chin = landmarks_px[FOREHEAD, :2].astype(np.float64), landmarks_px[CHIN, :2].astype(np.float64)
    face_height = float(np.linalg.norm(chin - top))
    if not np.isfinite(face_height) or face_height < 4.0:
        raise UsageError(f"the face is too small for a hair mask ({face_height:.1f} px from forehead to chin)")
    down = (chin - top) / face_height
    right = np.array([-down[1], down[0]])  # image x when the face is upright
    scale = config.work_size / (config.crop_side * face_height)  # crop pixels per photo pixel
    origin = top - config.crop_side / 2 * face_height * right - config.crop_above * face_height * down
    rotation = np.stack([right, down]) * scale  # rows: crop x and crop y per photo pixel
    matrix = np.concatenate([rotation, -(rotation @ origin)[:, None]], axis=1)
    return HeadCrop(matrix.astype(np.float64), config.work_size, face_height * scale)


def _warp_photo(rgb: np.ndarray, crop: HeadCrop) -> np.ndarray:
    """The crop's pixels: the photo area-averaged first when the crop shrinks it (warpAffine alone would
    alias), then resampled bilinearly; outside the photo the border pixels are repeated."""
    scale = float(np.hypot(*crop.matrix[0, :2]))
    matrix = crop.matrix
    if scale < 0.7:
        height, width = rgb.shape[:2]
        size = (max(1, round(width * scale * 1.25)), max(1, round(height * scale * 1.25)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        matrix = crop.matrix.copy()
        matrix[:, 0] /= size[0] / width  # the matrix now reads pixels of the smaller photo
        matrix[:, 1] /= size[1] / height
    return cv2.warpAffine(rgb, matrix, (crop.size, crop.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


# -- the per-photo colour + texture model -----------------------------------------------------------------------


@dataclass(frozen=True)
class Gaussian:
    """One class of the colour model: mean (D,) of the features, ``whiten`` (D, D) with
    ``whiten @ whiten.T`` the inverse covariance (its Cholesky factor), and the log normalising term
    ``-0.5 * log det(covariance)``."""

    mean: np.ndarray
    whiten: np.ndarray
    log_norm: float
    count: int

    @staticmethod
    def fit(samples: np.ndarray, floor: float) -> Gaussian:
        """Maximum-likelihood Gaussian of (N, D) samples, `floor` added to the covariance's diagonal."""
        mean = samples.mean(0)
        cov = np.cov(samples, rowvar=False).reshape(samples.shape[1], samples.shape[1])
        cov = cov + floor * np.eye(samples.shape[1])
        _, logdet = np.linalg.slogdet(cov)
        whiten = np.linalg.cholesky(np.linalg.inv(cov)).astype(np.float32)
        return Gaussian(mean.astype(np.float32), whiten, -0.5 * float(logdet), len(samples))

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(..., D) features -> (...) Mahalanobis distance to the mean (one matrix product: |(x - mean) W|)."""
        z = (features - self.mean) @ self.whiten
        return np.sqrt(np.einsum("...i,...i->...", z, z))

    def log_likelihood(self, features: np.ndarray) -> np.ndarray:
        """(..., D) -> (...) log density up to the constant every class shares."""
        z = (features - self.mean) @ self.whiten
        return self.log_norm - 0.5 * np.einsum("...i,...i->...", z, z)


def pixel_features(rgb: np.ndarray, window: int, gray_chroma: float) -> tuple[np.ndarray, bool]:
    """(H, W, 3) uint8 RGB -> ((H, W, D) float32 features, grayscale?).

    Features: CIE Lab (L in [0, 100], a and b roughly in [-100, 100], OpenCV's D65 conversion of sRGB) and
    ``log(1 + local standard deviation of L)`` over a `window` x `window` box. D = 4, or D = 2 (L and the
    texture) when the photo has no colour: its 99th-percentile chroma sqrt(a^2 + b^2) is below `gray_chroma`.
    """
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lightness = lab[..., 0]
    mean = cv2.blur(lightness, (window, window))
    mean_sq = cv2.blur(lightness * lightness, (window, window))
    texture = np.log1p(np.sqrt(np.maximum(mean_sq - mean * mean, 0.0)))
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    gray = bool(np.percentile(chroma, 99) < gray_chroma)
    channels = [lightness, texture] if gray else [lightness, lab[..., 1], lab[..., 2], texture]
    return np.stack(channels, axis=-1).astype(np.float32), gray


def _disc_mask(shape: tuple[int, int], centres: np.ndarray, radius: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for x, y in centres:
        cv2.circle(mask, (round(float(x)), round(float(y))), max(1, round(radius)), 1, -1)
    return mask.astype(bool)


def _head_centre(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The middle of a face's head (halfway from the forehead landmark to the chin, raised by a third of the
    face's height: the skull's centre, between the face and the crown) and the face's height, in pixels."""
    top, chin = landmarks[FOREHEAD, :2], landmarks[CHIN, :2]
    height = float(np.linalg.norm(chin - top))
    return (top + chin) / 2 + (top - chin) / 3, height


def other_heads(shape: tuple[int, int], landmarks: np.ndarray, others: Sequence[np.ndarray], margin: float
                ) -> np.ndarray:  # fmt: skip
    """(H, W) bool: the pixels nearer another face's head than this face's, distances measured in each face's
    height and ours allowed `margin` times as far (a weighted Voronoi split of a group photo by head): what the
    person segmentation gives to this person there belongs to a neighbour."""
    theirs = np.zeros(shape, bool)
    if not len(others):
        return theirs
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)

    def distance(points: np.ndarray) -> np.ndarray:
        centre, height = _head_centre(points)
        return np.hypot(xx - centre[0], yy - centre[1]) / max(height, 1.0)

    ours = distance(landmarks)
    for other in others:
        theirs |= distance(other) * margin < ours
    return theirs


def _disc(radius: float) -> np.ndarray:
    """A disc-shaped structuring element of `radius` pixels (at least 1)."""
    r = max(1, round(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _grow(mask: np.ndarray, radius: float) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), _disc(radius)).astype(bool)


# Natural hair in CIE Lab (from the shared photos and the usual hair-colour charts): chroma below about 45, hue
# (atan2(b, a)) between red-brown and yellow (golden blonde reaches chroma 35, ginger more). Pixels outside
# this are likely a hat, scarf or dye.
NATURAL_HAIR_MAX_CHROMA = 45.0
NATURAL_HAIR_HUE_DEG = (10.0, 100.0)
NATURAL_HAIR_FREE_CHROMA = 12.0  # below this chroma any hue passes (grays, whites, near-blacks)
VIVID_CHROMA = 50.0  # no hair of the shared photos reaches it on more than 5% of its pixels (golden blonde: 5%)


@dataclass(frozen=True)
class CropHair:
    """`classify_hair`'s result in crop pixels: ``mask`` (S, S) float32 in [0, 1] and the decisions."""

    mask: np.ndarray
    confidence: float
    kind: str
    notes: tuple[str, ...]
    seeds: dict[str, np.ndarray] = field(default_factory=dict, compare=False)  # name -> (S, S) bool, for sheets
    opaque: bool = False  # headwear with colours of its own (`HairMask.opaque`)


def _fit_trimmed(samples: np.ndarray, floor: float, trim: float) -> Gaussian:
    """A Gaussian of (N, D) samples refitted once without those beyond Mahalanobis distance `trim` of the first
    fit (stray pixels of another class among the seeds)."""
    first = Gaussian.fit(samples, floor)
    inliers = samples[first.distance(samples) <= trim]
    return Gaussian.fit(inliers, floor) if len(inliers) >= max(10, len(samples) // 4) else first


def _skin_models(features: np.ndarray, landmarks: np.ndarray, face: np.ndarray, face_px: float,
                 config: HairMaskConfig) -> tuple[list[Gaussian], np.ndarray]:  # fmt: skip
    """Skin: a Gaussian of the cheeks (trimmed of their darkest and lightest tenth: glasses, shadows,
    highlights), and one of the forehead above the brows when it looks like skin to the cheek model (within
    ``forehead_gate``: a fringe does not) -- a bald scalp is lit like the forehead, not like the cheeks.
    Returns the models and the (S, S) seed mask."""
    radius = config.skin_seed_radius * face_px
    cheeks = _disc_mask(face.shape, landmarks[list(CHEEKS)], radius) & face
    lightness = features[..., 0]
    lo, hi = np.percentile(lightness[cheeks], [10, 90])
    cheeks &= (lightness >= lo) & (lightness <= hi)
    models = [_fit_trimmed(features[cheeks], config.covariance_floor, 3.0)]
    forehead = _disc_mask(face.shape, landmarks[list(FOREHEAD_SKIN)], radius) & face
    forehead &= models[0].distance(features) < config.forehead_gate
    if forehead.sum() >= 0.5 * cheeks.sum():
        models.append(_fit_trimmed(features[forehead], config.covariance_floor, 3.0))
        return models, cheeks | forehead
    return models, cheeks


def skin_tone(features: np.ndarray, skin_seed: np.ndarray, gray: bool, config: HairMaskConfig) -> np.ndarray:
    """(S, S) bool: pixels of the skin's hue -- within ``shade_hue_deg`` of the skin seeds' median toward yellow
    (where blonde and brown hair lie) and ``flush_hue_deg`` toward red (a flushed forehead) -- with at least half
    its chroma, and no more textured than the skin's 95th percentile (a strand of platinum hair can have the
    skin's colour, not its smoothness), whatever their lightness; in a grayscale photo, the smoothness alone."""
    smooth = features[..., -1] <= np.percentile(features[..., -1][skin_seed], 95)
    if gray:
        return smooth
    a, b = features[..., 1], features[..., 2]
    skin_a, skin_b = np.median(a[skin_seed]), np.median(b[skin_seed])
    yellower = np.degrees(np.arctan2(b, a) - np.arctan2(skin_b, skin_a))
    yellower = (yellower + 180.0) % 360.0 - 180.0
    hue = (yellower < config.shade_hue_deg) & (yellower > -config.flush_hue_deg)
    return hue & (np.hypot(a, b) >= 0.5 * np.hypot(skin_a, skin_b)) & smooth


def shaded_skin(features: np.ndarray, skin_seed: np.ndarray, tone: np.ndarray, config: HairMaskConfig) -> np.ndarray:
    """(S, S) bool: pixels that are skin in another light -- of the skin's `tone` (`skin_tone`) and not darker
    than the skin seeds' median lightness by more than ``shade_darker``.

    A bald scalp and a highlight on the forehead are such pixels: lighter and a little paler than the cheeks, so
    far from the cheek model, but the same material. Hair is darker, or of another hue (blonde is yellower).
    """
    lightness = features[..., 0]
    not_darker = lightness > np.median(lightness[skin_seed]) - config.shade_darker
    return not_darker & tone


def skin_in_shadow(features: np.ndarray, skin_seed: np.ndarray, tone: np.ndarray, gray: bool, near_face: np.ndarray,
                   face_px: float, config: HairMaskConfig) -> np.ndarray:  # fmt: skip
    """(S, S) bool: skin in the shadow above the face -- pixels of the skin's `tone` (`skin_tone`) darker than the
    skin seeds' median lightness, however dark, in `near_face` (the upper forehead and the temples around the face
    oval), in patches at least ``shadow_min_width`` wide.

    Where the light falls off toward the hairline (a temple turned from the light, a forehead under a top light),
    the skin is darker than the lit cheeks the skin model was fitted on and lay closer to the broad hair model:
    the mask took a band of forehead for hair, and the volume covered it with hair in the skin's colour. Near the
    face, the skin's hue and smoothness tell it from hair, which is of another hue or textured. (Lighter pixels
    are left to the hair model: a blonde lock across the forehead can have the skin's hue and smoothness.) A
    grayscale photo has no hue to tell by: nothing is taken there."""
    if gray:
        return np.zeros(near_face.shape, bool)
    darker = features[..., 0] < np.median(features[..., 0][skin_seed])
    return _opened(tone & darker & near_face, config.shadow_min_width * face_px)


def bald_verdict(features: np.ndarray, hair_evidence: np.ndarray, crown: np.ndarray, skin_seed: np.ndarray,
                 config: HairMaskConfig) -> tuple[bool, float, str]:  # fmt: skip
    """Is the crown (the (S, S) bool band above the forehead, away from the outline) bare skin?

    Bald when less than ``bald_fraction`` of the crown is hair evidence; or when less than
    ``bald_fraction_smooth`` is and the crown is smooth (median texture below ``bald_texture_ratio`` times the
    skin's) and not darker than the skin (a shaved or receding scalp). Returns (bald, fraction of hair evidence
    in the crown, a sentence saying why).
    """
    fraction = float(hair_evidence[crown].mean())
    texture_ratio = float(np.median(features[crown][:, -1]) / max(np.median(features[skin_seed][:, -1]), 1e-6))
    darker = float(np.median(features[skin_seed][:, 0]) - np.median(features[crown][:, 0]))
    if fraction < config.bald_fraction:
        return True, fraction, f"bald: only {fraction:.0%} of the crown above the forehead is unlike the skin"
    if fraction < config.bald_fraction_smooth and texture_ratio < config.bald_texture_ratio \
            and darker < config.shade_darker:
        return True, fraction, (f"bald or shaved: {fraction:.0%} of the crown is unlike the skin, and it is as smooth "
                                f"(texture x{texture_ratio:.2f}) and not darker than the skin")
    return False, fraction, ""


def _kmeans(samples: np.ndarray, k: int, iterations: int = 10) -> np.ndarray:
    """(N,) cluster labels of (N, D) samples by Lloyd's k-means, started from k-means++ seeds drawn by a local
    generator with a fixed seed (deterministic; no global random state is touched)."""
    rng = np.random.default_rng(0)
    centres = [samples[rng.integers(len(samples))]]
    for _ in range(1, k):
        d2 = np.min([((samples - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(samples[rng.choice(len(samples), p=d2 / d2.sum())] if d2.sum() > 0 else samples[0])
    centres = np.stack(centres)
    for _ in range(iterations):
        labels = ((samples[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        moved = np.stack([samples[labels == c].mean(0) if (labels == c).any() else centres[c] for c in range(k)])
        if np.allclose(moved, centres):
            break
        centres = moved
    return ((samples[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)


def _background_models(samples: np.ndarray, min_seeds: int, config: HairMaskConfig) -> list[Gaussian]:
    """Gaussians of the (N, D) background samples split into ``background_clusters`` k-means clusters (at most
    4000 samples, every n-th: deterministic); clusters with fewer than `min_seeds` samples are dropped."""
    if len(samples) < min_seeds:
        return []
    samples = samples[:: max(1, len(samples) // 4000)].astype(np.float32)
    k = max(1, min(config.background_clusters, len(samples) // min_seeds))
    labels = _kmeans(samples, k)
    return [Gaussian.fit(samples[labels == c], config.covariance_floor) for c in range(k)
            if (labels == c).sum() >= min_seeds]  # fmt: skip


def headwear_verdict(features: np.ndarray, inside: np.ndarray, gray: bool, area: float,
                     config: HairMaskConfig) -> tuple[bool, list[str], bool]:  # fmt: skip
    """Is the (S, S) bool region `inside` headwear rather than hair? Returns (headwear, sentences saying why,
    whether it is opaque headwear with colours of its own, `HairMask.opaque`).

    Yes, opaque, when more than ``headwear_vivid`` of it is vivid (Lab chroma above `VIVID_CHROMA`: a red hat) or
    when its lightness quartiles lie more than ``headwear_two_tone`` L units apart (a dark cap's band under a white
    crown: the shared photos' hair, grey, streaked or with backdrop between curls, reaches 39, both hats 56; judged
    on regions of at least ``two_tone_min_area``, where quartiles mean something). Yes,
    but perhaps hair, when more than ``headwear_fraction`` has colours natural hair rarely has
    (`_unnatural_fraction`: a green scarf, or dyed hair -- the note says both), or when it covers more than
    ``max_hair_area`` face heights squared (a headscarf, a hood, or backdrop the segmentation took for the person).
    Colour is not judged on a grayscale photo. A one-coloured black cap passes for black hair: no verdict here.
    """
    notes, opaque = [], False
    if area >= config.two_tone_min_area:
        low, high = np.percentile(features[inside, 0], (25, 75))
        if high - low > config.headwear_two_tone:
            opaque = True
            notes.append(f"two tones far apart (lightness quartiles {low:.0f} and {high:.0f}), as a cap's band and "
                         "crown, not hair's: headwear, treated as hair")  # fmt: skip
    if not gray and inside.any():
        vivid = float((np.hypot(features[inside, 1], features[inside, 2]) > VIVID_CHROMA).mean())
        unnatural = _unnatural_fraction(features, inside)
        if vivid > config.headwear_vivid:
            opaque = True
            notes.append(f"{vivid:.0%} of the region is of a vivid colour (Lab chroma above {VIVID_CHROMA:.0f}) no "
                         "hair has: headwear, treated as hair")  # fmt: skip
        elif unnatural > config.headwear_fraction and not opaque:
            notes.append(f"{unnatural:.0%} of the region has colours natural hair rarely has: headwear or dyed "
                         "hair, treated as hair")  # fmt: skip
    if area > config.max_hair_area:
        notes.append(f"an unusually large region ({area:.1f} face heights squared): a headscarf or hood, or a "
                     "background the segmentation took for the person? treated as hair")  # fmt: skip
    return bool(notes), notes, opaque


def _brow_line(landmarks: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The height (image y) of the brows' upper outline above each x of `x` (any shape), constant beyond the
    brows' outer ends."""
    brows = landmarks[list(BROWS), :2]
    order = np.argsort(brows[:, 0])
    return np.interp(x, brows[order, 0], brows[order, 1]).astype(np.float32)


def _on_the_hairs_side(lightness: np.ndarray, hair_seed: np.ndarray, skin_seed: np.ndarray, min_gap: float
                       ) -> np.ndarray:  # fmt: skip
    """(S, S) bool: pixels whose lightness lies on the hair's side of the midpoint between the hair and skin
    seeds' median lightness; all True when those differ by less than `min_gap` L units (lightness tells nothing)."""
    hair, skin = float(np.median(lightness[hair_seed])), float(np.median(lightness[skin_seed]))
    if abs(hair - skin) < min_gap:
        return np.ones(lightness.shape, bool)
    return (lightness - (hair + skin) / 2) * np.sign(hair - skin) > 0


def _opened(mask: np.ndarray, width: float) -> np.ndarray:
    """(S, S) bool: `mask` without its parts narrower than about `width` pixels (a morphological opening)."""
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _disc(width / 2)).astype(bool)


def _components_kept(core: np.ndarray, seeds: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """The connected parts of the (S, S) bool `core` that hold a hair seed and reach the person's outline
    (scalp hair forms the head's silhouette; a lighter patch of forehead between hairline and brows does not)."""
    count, labels = cv2.connectedComponents(core.astype(np.uint8), connectivity=8)
    with_seed = np.unique(labels[seeds & core])
    on_outline = np.unique(labels[outline & core])
    kept = np.intersect1d(with_seed, on_outline)
    return np.isin(labels, kept[kept > 0])


def _unnatural_fraction(features: np.ndarray, inside: np.ndarray) -> float:
    """Fraction of the (S, S) bool `inside` pixels whose Lab colour natural hair does not have (see
    `NATURAL_HAIR_*`); features as `pixel_features` with colour."""
    a, b = features[inside, 1], features[inside, 2]
    chroma, hue = np.hypot(a, b), np.degrees(np.arctan2(b, a))
    natural_hue = (hue >= NATURAL_HAIR_HUE_DEG[0]) & (hue <= NATURAL_HAIR_HUE_DEG[1])
    natural = (chroma < NATURAL_HAIR_FREE_CHROMA) | ((chroma < NATURAL_HAIR_MAX_CHROMA) & natural_hue)
    return float(1.0 - natural.mean()) if inside.any() else 0.0


def classify_hair(rgb: np.ndarray, person: np.ndarray, landmarks: np.ndarray, face_px: float,
                  config: HairMaskConfig = HairMaskConfig(), others: Sequence[np.ndarray] = ()
                  ) -> CropHair:  # fmt: skip
    """The hair of an upright head crop.

    Takes the crop (S, S, 3) uint8 RGB, the person probability (S, S) float in [0, 1] at the same size, the
    (478, 2) landmarks in crop pixels and the face height in crop pixels; returns a `CropHair`. `others`: the
    landmarks (478, 2, crop pixels) of the photo's other faces, whose heads are not this one's hair
    (`other_heads`: the segmentation takes a group for one person, and a neighbour's hair or headscarf for ours).

    Confidence: the product of (a) how far the hair seeds lie from the skin model (median Mahalanobis distance,
    mapped 2 -> 0 and 6 -> 1) and (b) how decided the kept pixels are (mean |2 p - 1| of the hair posterior
    inside the mask), divided by how many times a region larger than ``max_hair_area`` exceeds it. For a bald
    verdict: ``1 - fraction / bald_fraction_smooth`` of the crown's hair evidence (see `bald_verdict`). A
    heuristic in [0, 1], not a calibrated probability: wrong masks of dark headwear score high too.
    """
    size = rgb.shape[0]
    shape = rgb.shape[:2]
    notes: list[str] = []
    features, gray = pixel_features(rgb, config.texture_window, config.gray_chroma)
    if gray:
        notes.append("grayscale photo: hair told from skin by lightness and texture only")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # The person's outline (what the kept hair must reach, what the crown keeps clear of) is the segmentation's,
    # not the border drawn between this head and a neighbour's.
    segmented = person > config.person_threshold
    theirs = other_heads(shape, landmarks, others, config.other_head_margin)
    if theirs.any():
        person = person * ~theirs
        notes.append("another face's head is in the crop: it is not this one's hair")
    is_person = person > config.person_threshold
    face = polygon_mask(landmarks[list(FACE_OVAL), :2], shape[::-1])
    no_seed = _grow(face, config.face_margin * face_px)
    fringe_zone = no_seed & (yy < _brow_line(landmarks, xx) - config.fringe_clearance * face_px)
    no_hair = no_seed & ~fringe_zone
    top_x, top_y = (float(v) for v in landmarks[FOREHEAD])
    chin_y = float(landmarks[CHIN, 1])
    ear_y = float(landmarks[list(EAR_LEVEL), 1].max())
    jaw = landmarks[list(JAW_CORNERS)]
    jaw_x0, jaw_x1 = float(jaw[:, 0].min()), float(jaw[:, 0].max())
    margin = config.neck_margin * face_px
    neck = (xx >= jaw_x0 - margin) & (xx <= jaw_x1 + margin) & (yy > float(jaw[:, 1].min()))
    no_hair |= neck
    no_seed |= neck

    skins, skin_seed = _skin_models(features, landmarks, face, face_px, config)
    skin_distance = np.min([s.distance(features) for s in skins], axis=0)
    far_from_skin = skin_distance > config.far_from_skin
    tone = skin_tone(features, skin_seed, gray, config)  # (once: both tests below read it)
    shaded = shaded_skin(features, skin_seed, tone, config)
    # (not inside the grown face oval, where a fringe may be: the fringe has its own test below)
    near_face = _grow(face, config.shadow_band * face_px) & ~no_seed & (yy < ear_y)
    shadowed = skin_in_shadow(features, skin_seed, tone, gray, near_face, face_px, config)
    hair_evidence = far_from_skin & ~shaded & ~shadowed

    # The scalp zone: an ellipse over the upper head, outside the face, above the ears, on the person.
    centre_y = top_y + config.scalp_centre * face_px
    ellipse = (((xx - top_x) / (config.scalp_width * face_px)) ** 2
               + ((yy - centre_y) / (config.scalp_height * face_px)) ** 2) <= 1.0  # fmt: skip
    scalp = ellipse & ~no_seed & (yy < ear_y) & is_person
    crown = scalp & (yy < top_y) & ~_grow(~segmented, config.crown_inset * face_px)
    hair_seed = scalp & hair_evidence
    # Clothes: not skin, not even bare skin in another light (a chest, a hand), below the chin, in the middle.
    clothes_seed = (is_person & hair_evidence & (skin_distance > config.clothes_from_skin * config.far_from_skin)
                    & (yy > chin_y + config.clothes_below_chin * face_px)
                    & (np.abs(xx - top_x) < config.clothes_half_width * face_px))  # fmt: skip
    seeds = {"skin": skin_seed, "hair": hair_seed, "clothes": clothes_seed}
    min_seeds = max(20, round(config.min_seed_fraction * face_px**2))

    empty = np.zeros(shape, np.float32)
    if crown.sum() < min_seeds:
        notes.append("too little of the person above the forehead to judge (cropped photo?)")
        return CropHair(empty, 0.0, "unknown", tuple(notes), seeds)
    bald, fraction, why = bald_verdict(features, hair_evidence, crown, skin_seed, config)
    if bald or hair_seed.sum() < min_seeds:
        notes.append(why or "bald: too few pixels unlike the skin around the face")
        confidence = float(np.clip(1.0 - fraction / config.bald_fraction_smooth, 0.0, 1.0))
        return CropHair(empty, confidence, "bald", tuple(notes), seeds)

    hair = _fit_trimmed(features[hair_seed], config.covariance_floor, config.hair_trim)
    # Where hair is less likely a priori: below the ears and far to the sides (log prior, nats per face height).
    below = np.maximum(yy - ear_y, 0.0) / face_px
    aside = np.maximum(np.abs(xx - top_x) - config.hair_half_width * face_px, 0.0) / face_px
    hair_prior = -config.hair_prior_slope * (below + aside)
    # ... and more likely high on the crown, well above any hairline (a bald crown was ruled out above).
    hair_prior = hair_prior + config.crown_prior * (ellipse & (yy < top_y - config.crown_above * face_px))
    # The person probability is the prior of the person's classes against the background's.
    p_person = np.clip(person, config.person_floor, 1.0 - config.person_floor)
    log_person, log_background = np.log(p_person), np.log1p(-p_person)
    logs = [s.log_likelihood(features) + log_person for s in skins]
    logs.append(hair.log_likelihood(features) + hair_prior + log_person)
    hair_index = len(skins)
    if clothes_seed.sum() >= min_seeds:
        clothes = _fit_trimmed(features[clothes_seed], config.covariance_floor, config.hair_trim)
        # Clothes never reach above halfway from the ears to the chin, nor above the ears outside the head
        # (a raised shoulder can).
        collar_y = (ear_y + chin_y) / 2.0
        allowed = (yy > collar_y) | (~ellipse & (yy > ear_y))
        logs.append(np.where(allowed, clothes.log_likelihood(features) + log_person, -np.inf))
    else:
        notes.append("no clothes below the chin to model")
    # The background around the head, in a few colour clusters: what a door or a wall the segmentation took for
    # the person looks like where it did not.
    reach = config.background_reach
    near = (((xx - top_x) / (reach * config.scalp_width * face_px)) ** 2
            + ((yy - centre_y) / (reach * config.scalp_height * face_px)) ** 2) <= 1.0  # fmt: skip
    # They compete below the ears only: higher up, dark hair against a dark backdrop would be taken for it.
    below_ears = yy > ear_y
    backdrop = (person < config.background_below) & near & ~theirs
    for background in _background_models(features[backdrop], min_seeds, config):
        logs.append(np.where(below_ears, background.log_likelihood(features) + log_background, -np.inf))
    # Anything else (another person's coat, a background the segmentation let through): a flat density that
    # wins wherever a pixel lies farther than ``outlier_distance`` from the hair model and every other class.
    logs.append(np.full(shape, hair.log_norm - 0.5 * config.outlier_distance**2, np.float32))
    stacked = np.stack(logs)
    stacked -= stacked.max(0, keepdims=True)
    posterior = np.exp(stacked)
    hair_post = posterior[hair_index] / posterior.sum(0)

    candidate = hair_post * np.clip(person, 0.0, 1.0) * ~no_hair * ~shadowed
    # A fringe is a band of hair over the forehead, not skin in another light (a shaded forehead, a highlight on
    # it: lighter than the skin where the hair is darker), and what of it is narrower than `fringe_width` (wisps
    # at the hairline, a crease) is not one.
    core = candidate > 0.5
    like_hair = ~shaded & _on_the_hairs_side(features[..., 0], hair_seed, skin_seed, config.fringe_lightness)
    allowed = ~fringe_zone | _opened(core & fringe_zone & like_hair, config.fringe_width * face_px)
    core &= allowed
    candidate = candidate * allowed
    outline = _grow(~segmented, config.outline_reach * face_px)
    keep = _grow(_components_kept(core, hair_seed, outline), 2)
    mask = cv2.GaussianBlur((candidate * keep).astype(np.float32), (0, 0), config.smooth_sigma)
    mask[no_hair | theirs] = 0.0
    inside = mask > 0.5

    hair_seed_distance = skin_distance[hair_seed]
    separation = float(np.clip((np.median(hair_seed_distance) - 2.0) / 4.0, 0.0, 1.0))
    decided = float(np.abs(2.0 * hair_post[inside] - 1.0).mean()) if inside.any() else 0.0
    confidence = separation * decided

    area = float(inside.sum()) / face_px**2  # in face heights squared: 0.1 .. 1.0 on the shared photos' hair
    headwear, why, opaque = headwear_verdict(features, inside, gray, area, config)
    kind = "headwear-or-hair" if headwear else "hair"
    notes += why
    if area > config.max_hair_area:
        confidence *= config.max_hair_area / area
    low = inside & (yy > ear_y + 0.25 * face_px)  # clearly below: sideburns and ear tips do not count
    if low.sum() > config.min_seed_fraction * face_px**2:
        notes.append("hair reaches below the ears")
    if not inside.any():
        notes.append("no hair found around the face")
    notes.append(f"hair on {inside.mean():.1%} of the head crop; confidence {confidence:.2f}")
    return CropHair(mask, confidence, kind, tuple(notes), seeds, opaque)


# -- the whole stage -------------------------------------------------------------------------------------------


def hair_mask(rgb: np.ndarray, observation: FaceObservation, segmenter: PersonSegmenter,
              config: HairMaskConfig = HairMaskConfig(), others: Sequence[FaceObservation] = ()
              ) -> HairMask:  # fmt: skip
    """The hair mask of one observed face.

    Takes the photo (H, W, 3) uint8 RGB the observation was made on, the `FaceObservation` (its 478
    landmarks in that photo's pixels) and a loaded `PersonSegmenter`; returns a `HairMask` at the photo's
    resolution. `others`: the photo's other faces (their heads are not this one's hair, see `other_heads`).
    Raises `UsageError` for an image of the wrong type or an observation of another size.
    `hair_mask_debug` also returns the intermediate images.
    """
    return hair_mask_debug(rgb, observation, segmenter, config, others)[0]


def hair_mask_debug(rgb: np.ndarray, observation: FaceObservation, segmenter: PersonSegmenter,
                    config: HairMaskConfig = HairMaskConfig(), others: Sequence[FaceObservation] = ()
                    ) -> tuple[HairMask, dict]:  # fmt: skip
    """`hair_mask` and the intermediate images: {"crop": (S, S, 3) uint8, "person": (S, S) float32,
    "crop_hair": CropHair, "head_crop": HeadCrop} (for contact sheets and tests)."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        got = f"{rgb.shape} {rgb.dtype}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise UsageError(f"the hair mask needs an (H, W, 3) uint8 RGB photo, got {got}")
    height, width = rgb.shape[:2]
    if tuple(observation.image_size) != (width, height):
        raise UsageError(f"the face was observed on a {observation.image_size[0]}x{observation.image_size[1]} "
                         f"photo, not on this {width}x{height} one")  # fmt: skip
    landmarks = np.asarray(observation.landmarks_px, np.float64)
    if landmarks.shape[0] != N_LANDMARKS or not np.isfinite(landmarks[:, :2]).all():
        raise UsageError(f"the observation needs {N_LANDMARKS} finite landmarks, got {landmarks.shape}")
    timings = {}
    start = time.perf_counter()
    crop = head_crop(landmarks, config)
    crop_rgb = _warp_photo(rgb, crop)
    timings["crop"] = time.perf_counter() - start
    start = time.perf_counter()
    person_small = segmenter(crop_rgb)
    person = cv2.resize(person_small, (crop.size, crop.size), interpolation=cv2.INTER_LINEAR)
    # Outside the photo the crop repeats the border: whatever the model sees there is not the person.
    inside = cv2.warpAffine(np.ones((height, width), np.float32), crop.matrix, (crop.size, crop.size),
                            flags=cv2.INTER_LINEAR, borderValue=0.0)  # fmt: skip
    person = person * inside
    timings["segmentation"] = time.perf_counter() - start
    start = time.perf_counter()
    for other in others:
        if tuple(other.image_size) != (width, height) or not np.isfinite(other.landmarks_px[:, :2]).all():
            raise UsageError(f"another face of the photo was observed on a {other.image_size[0]}x"
                             f"{other.image_size[1]} photo or has no finite landmarks")  # fmt: skip
    theirs = [crop.to_crop(np.asarray(other.landmarks_px, np.float64)) for other in others]
    result = classify_hair(crop_rgb, person, crop.to_crop(landmarks), crop.face_px, config, theirs)
    timings["colour_model"] = time.perf_counter() - start
    start = time.perf_counter()
    mask = cv2.warpAffine(result.mask, crop.inverse, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.0)
    mask = np.clip(mask, 0.0, 1.0).astype(np.float32)
    timings["to_photo"] = time.perf_counter() - start
    hair = HairMask(mask, result.confidence, result.kind, result.notes, timings, result.opaque)
    return hair, {"crop": crop_rgb, "person": person, "crop_hair": result, "head_crop": crop}
