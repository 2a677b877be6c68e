"""`HairConfig`: the hair volume's settings (no heavy imports: `sie3d.avatar` reads it at import time)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HairConfig"]


@dataclass(frozen=True)
class HairConfig:
    """Settings of the hair volume and texture (on by default; `enabled` False: a bare scalp, the avatar without hair).

    Angles in degrees, lengths in cm. The defaults were set by looking at contact sheets of the shared photos
    (`scripts/hair_sheet.py`), never by a judge's score."""

    enabled: bool = True
    rows: int = 72  # polar samples from the crown to `max_polar_deg`
    columns: int = 96  # azimuth samples around the head
    max_polar_deg: float = 165.0  # the lowest direction of the grid (long hair hangs down to about here)
    envelope_dilation: int = 2  # cells by which the scalp envelope is grown (covers triangles' interiors)
    gap_cm: float = 0.25  # clearance between the highest scalp (any expression) and the hair's inside
    min_thickness_cm: float = 0.5  # hair is at least this thick where there is hair
    max_thickness_cm: float = 7.0  # and at most this (an up-do or an afro is measured up to here)
    reach_steps: int = 15  # samples along a direction when measuring the hair's reach in the mask (0.5 cm apart)
    facing: float = -0.2  # a hair point is seen by the photo when cos(normal, to camera) exceeds this
    silhouette: float = 0.3  # ... and on its silhouette when |cos| is below this (its reach is measurable)
    silhouette_slack_cm: float = 1.0  # there, hair this far inward or outward of the scalp's point is its hair
    mirror_from_azimuth_deg: float = 50.0  # beyond this from the nose, above the ears, hair on one side is on both
    spread_azimuth_deg: float = 45.0  # the continuation's reach around the head
    spread_polar_deg: float = 6.0  # ... and in elevation
    unseen_scalp_prior: float = 0.05  # weight (as of seen directions) of "the unseen scalp holds hair"
    # weight of the typical measured thickness where none is measured: far from every measurement it is the
    # thickness, and between the two the thickness passes smoothly from one to the other (with none, it stepped
    # where the measurements' reach ended: a crown cut off by the frame stood up as a flat-topped block)
    unmeasured_thickness_prior: float = 0.01
    face_margin_deg: float = 2.0  # the face oval's directions (under every expression) grown by this carry no hair,
    fringe_clearance_deg: float = 5.0  # except a fringe the photo shows, down to this far above the brows at rest
    drop_polar_deg: float = 100.0  # below this the hair falls vertically where it hangs (else lies on the nape)
    curtain_azimuth_deg: float = 85.0  # ... and only behind this azimuth (0 = the nose): behind the shoulders' line
    fall_rows: float = 3.0  # hair hanging this many rows below the drop row falls vertically; less, it lies closer
    fall_blend_columns: float = 2.0  # the change between falling and lying on the nape spreads over these columns
    nape_thinning_rows: float = 4.0  # lying on the nape, the hair thins to the minimum over this many rows
    min_hanging_width_cm: float = 1.5  # hair beside the neck narrower than this (a lock) hangs no curtain
    hanging_gap_rows: int = 2  # rows without it there that are bridged (strands parting) before the hair ends
    nape_azimuth_deg: float = 120.0  # behind this azimuth hair reaches at least the nape ...
    nape_drop_cm: float = 1.0  # ... this far below the ear lobes beside the ears ...
    nape_dip_cm: float = 2.5  # ... and this much lower again at the middle of the back
    max_hole: float = 0.35  # holes in the hair mask smaller than this (face heights, squared) are filled
    edge_taper_cells: float = 4.0  # the thickness falls to zero over this many cells at the hair's edge
    presence_gain: float = 4.0  # the continued presence is sharpened around min_presence by this factor
    min_presence: float = 0.5  # presence above which a direction holds hair
    min_hair_fraction: float = 0.03  # fewer covered directions than this: no hair mesh
    texture_size: int = 512  # texels per side of the hair texture
    patch: int = 32  # texels per side of the synthesis patches
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rows < 8 or self.columns < 8 or self.columns % 2:
            raise ValueError(f"the hair grid needs >= 8 rows and an even number >= 8 of columns, got "
                             f"{self.rows} x {self.columns}")  # fmt: skip
        if not 90.0 < self.max_polar_deg < 180.0:
            raise ValueError(f"max_polar_deg must lie in (90, 180), got {self.max_polar_deg}")
        if self.fall_rows <= 0 or self.nape_thinning_rows <= 0:
            raise ValueError(f"fall_rows and nape_thinning_rows must be positive, got {self.fall_rows} and "
                             f"{self.nape_thinning_rows}")  # fmt: skip
