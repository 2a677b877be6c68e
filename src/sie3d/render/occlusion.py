"""Expression-dependent occlusion: the creases and hollows an expression deepens get darker.

The skin texture comes from the photo, so the shadows of the photo's own expression are in it already;
what no texture holds is what a *new* expression changes: brows drawn down over the eyes, cheeks pushed
up against the lower lids, nasolabial folds and a wrinkled nose deepened, inner brows raised into a
furrowed forehead. `vertex_openness` measures how open the sky is over each vertex of a posed head, and
`ExpressionOcclusion` darkens each vertex of a render by how much less open it is than on the photo's own
expression (never brighter: the photo's shading is not undone).

Openness is horizon-based ambient occlusion on one front height map of the head (head space, +z toward
the viewer; the face is nearly a height field seen from the front): the head is rasterised once, and for
every vertex `OcclusionConfig.directions` directions in the image plane are marched up to
`OcclusionConfig.radius_cm`; in each direction the steepest neighbour above the vertex's tangent plane
(the cosine between its normal and the way to that neighbour, less `bias`, fading with distance) hides
that share of the sky. Computed without gradients (a render's colour keeps its own), in about 0.1 s.

**Cast shadows** (optional, `ExpressionOcclusion.light`): a lowered brow also shades the lid under it from a
key light above the face, which horizon-based openness, looking at the whole sky, hardly sees. `vertex_light`
renders a depth map from the light's direction and tells each vertex how much of it the light reaches (3 x 3
samples, so shadow edges are soft); a vertex the pose puts in a shadow the reference pose did not loses the
light's direct part of its shading (diffuse x cosine over ambient + that: about half, facing the studio light).
Relative, like the openness: the photo's own shadows are in the texture.

**The inside of the mouth** is the exception: teeth, gums, tongue and socket have procedural textures with no
shading of the photo in them (only a depth darkening baked on the neutral head, and the lips' opening dimming
them as they close: `sie3d.head.mouth`, `sie3d.previews.mouth_light`), so their darkening here is absolute, for
every pose the photo's own included (`MouthInterior`): light reaches them from in front of the lips, and the
deeper a point lies behind the inner lips (head-space z, in the pose), the less of it -- full light within
`mouth_free_cm` of them (the front teeth of a smile, the gums bared by a raised lip), then falling off as
exp(-depth / `mouth_falloff_cm`): the teeth at a smile's corners dim, and the tongue and molars of an open
mouth, 2-5 cm behind the lips, are nearly black, as the open mouths of the shared photos are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from .camera import Cameras, look_at, perspective_K, project
from .rasterize import rasterize
from .renderer import DirectionalLight, RenderOutput
from .shade import vertex_normals

__all__ = ["ExpressionOcclusion", "MouthInterior", "OcclusionConfig", "vertex_light", "vertex_openness"]


@dataclass(frozen=True)
class OcclusionConfig:
    """Chosen from the anatomy (a brow hangs 1-2 cm over the lid) and by looking at renders; never fitted."""

    size: int = 256  # px of the front height map
    span_cm: float = 30.0  # its width and height (a head and neck)
    radius_cm: float = 1.5  # how far from a vertex its hiders are looked for
    directions: int = 8
    steps: int = 12
    bias: float = 0.1  # cosine a neighbour must rise above the tangent plane to hide anything (gentle curves)
    floor: float = 0.3  # the darkest an expression makes a vertex, as a factor
    mouth_free_cm: float = 0.5  # the inside of the mouth keeps all the light up to this far behind the inner lips
    mouth_falloff_cm: float = 1.0  # ... and beyond, exp(-depth / this)
    mouth_floor: float = 0.03  # the darkest the inside of the mouth gets, as a factor
    shadow_size: int = 512  # px of the depth map seen from the key light (over `span_cm`)
    shadow_bias_cm: float = 0.05  # a vertex this far behind the light's first surface still counts as lit (+ slope)


@torch.no_grad()
def vertex_openness(verts: Tensor, faces: Tensor, center: Tensor, config: OcclusionConfig = OcclusionConfig(),
                    face_mask: Tensor | None = None) -> Tensor:  # fmt: skip
    """(V,) in [0, 1]: how open the sky is over each vertex of `verts` (V, 3), head space in cm, seen from the
    front (+z) of the height map centred on `center` (3,); 1 = nothing rises over it. `faces` (F, 3) long;
    `face_mask` (F,) bool hides faces (hidden shells)."""
    distance = 300.0  # cm: a far, narrow camera is nearly orthographic
    eye = (center + torch.tensor([0.0, 0.0, distance], dtype=verts.dtype))[None]
    cams = Cameras(perspective_K(config.size * distance / config.span_cm, config.size, config.size)[None]
                   .contiguous(), look_at(eye, center[None]), config.size, config.size)  # fmt: skip
    fragments = rasterize(verts, faces, cams, face_mask=face_mask)
    covered = fragments.tri_id[0] >= 0
    height = torch.where(covered, distance - fragments.depth[0], torch.full_like(fragments.depth[0], -1e3))
    pixels, depth = project(verts, cams)
    pixels, own_height = pixels[0], distance - depth[0]
    angle = torch.arange(config.directions, dtype=verts.dtype) * (2 * math.pi / config.directions)
    step = torch.arange(1, config.steps + 1, dtype=verts.dtype) * (config.radius_cm / config.steps)  # cm
    way = torch.stack([torch.cos(angle), torch.sin(angle)], -1)  # image x right, y down
    at = pixels[:, None, None] + way[None, :, None] * (step * config.size / config.span_cm)[None, None, :, None]
    heights = F.grid_sample(height[None, None], (at / config.size * 2 - 1).reshape(1, -1, 1, 2), mode="bilinear",
                            align_corners=False, padding_mode="border").reshape(len(verts), len(angle), len(step))
    # The cosine between the normal and the way from the vertex to each sample, (way x step, -way y step, rise in
    # height) in head space (image y runs down, head y up), whose length is sqrt(step^2 + rise^2): written out
    # instead of stacking the (V, directions, steps, 3) offsets.
    normals = vertex_normals(verts, faces)
    along = normals[:, 0, None] * way[None, :, 0] - normals[:, 1, None] * way[None, :, 1]  # (V, directions)
    up = heights - own_height[:, None, None]
    rise = (along[..., None] * step + up * normals[:, 2, None, None]) / torch.sqrt(step**2 + up**2).clamp_min(1e-6)
    fade = 1 - (step / config.radius_cm) ** 2
    hidden = ((rise - config.bias).clamp_min(0) * fade).amax(-1)  # (V, directions)
    return (1 - hidden.mean(-1)).clamp(0, 1)


@torch.no_grad()
def vertex_light(verts: Tensor, faces: Tensor, center: Tensor, direction: Tensor,
                 config: OcclusionConfig = OcclusionConfig(), face_mask: Tensor | None = None) -> Tensor:  # fmt: skip
    """(V,) in [0, 1]: how much of each vertex of `verts` (V, 3), head space in cm, a distant light from
    `direction` (3,) (toward the light) reaches -- the share of 3 x 3 samples of a depth map seen from the light
    (`shadow_size` px over `span_cm`, centred on `center`), a texel apart, that the vertex is not behind. The
    bias grows with the slope toward the light (a texel's depth step), so surfaces facing the light do not
    shadow themselves; a vertex facing away from it gets none of it."""
    distance = 300.0  # cm: a far, narrow camera is nearly orthographic
    toward = direction / direction.norm()
    size = config.shadow_size
    eye = (center + toward * distance)[None]
    up = torch.tensor([0.0, 0.0, -1.0] if abs(float(toward[1])) > 0.9 else [0.0, 1.0, 0.0], dtype=verts.dtype)
    cams = Cameras(perspective_K(size * distance / config.span_cm, size, size)[None].contiguous(),
                   look_at(eye, center[None], up[None]), size, size)  # fmt: skip
    fragments = rasterize(verts, faces, cams, face_mask=face_mask)
    first = torch.where(fragments.tri_id[0] >= 0, fragments.depth[0], torch.full_like(fragments.depth[0], 1e4))
    pixels, depth = project(verts, cams)
    shifts = torch.tensor([(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=verts.dtype)  # (9, 2) px
    at = pixels[0][:, None] + shifts[None]  # (V, 9, 2)
    # nearest texel: a bilinear mix of a near surface and the far background would be neither
    seen = F.grid_sample(first[None, None], (at / size * 2 - 1).reshape(1, -1, 1, 2), mode="nearest",
                         align_corners=False, padding_mode="border").reshape(len(verts), len(shifts))
    facing = vertex_normals(verts, faces) @ toward  # cosine to the light
    slope = torch.sqrt((1 - facing**2).clamp_min(0)) / facing.clamp_min(0.2)  # tan of the angle, at most ~4.9
    bias = config.shadow_bias_cm + 2 * slope * config.span_cm / size  # two texels' depth step
    lit = (depth[0][:, None] <= seen + bias[:, None]).to(verts.dtype).mean(-1)
    return torch.where(facing > 0, lit, torch.zeros_like(lit))


@dataclass(frozen=True)
class MouthInterior:
    """The inside of a head's mouth: `inside` (V,) bool, its vertices (procedural textures), and `lips` (K,) long,
    the vertices of the inner lip contour the light comes in through."""

    inside: Tensor
    lips: Tensor

    def light(self, verts: Tensor, config: OcclusionConfig = OcclusionConfig()) -> Tensor:
        """(V,) in [`mouth_floor`, 1] for the posed head `verts` (V, 3), head space in cm: on the inside, all the
        light up to `mouth_free_cm` behind the inner lips' mean depth (z), then exp(-depth / `mouth_falloff_cm`);
        ones elsewhere."""
        verts = verts.detach()
        depth = (verts[self.lips, 2].mean() - verts[:, 2] - config.mouth_free_cm).clamp_min(0)
        light = torch.exp(-depth / config.mouth_falloff_cm).clamp(config.mouth_floor, 1.0)
        return torch.where(self.inside, light, torch.ones_like(light))


@dataclass(frozen=True)
class ExpressionOcclusion:
    """Darkening of a posed head relative to a reference pose (the photo's expression), whose openness is
    measured on first use."""

    reference_verts: Tensor  # (V, 3) head space, cm
    faces: Tensor  # (F, 3) long
    center: Tensor  # (3,) head space, cm: the middle of the face
    face_mask: Tensor | None = None  # (F,) bool
    mouth: MouthInterior | None = None  # its light is absolute: procedural textures hold no shading
    config: OcclusionConfig = OcclusionConfig()
    light: DirectionalLight | None = None  # a key light whose new cast shadows darken; None: none
    held_factor: Tensor | None = None  # (V,): `held` -- every pose is shaded like this one
    # "pose": (verts, factor) last shaded; not init: a `replace`d occlusion (another mouth, held) starts its own
    _last: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    @cached_property
    def reference(self) -> Tensor:
        return vertex_openness(self.reference_verts, self.faces, self.center, self.config, self.face_mask)

    @cached_property
    def reference_light(self) -> Tensor:
        return self._light(self.reference_verts)

    def _light(self, verts: Tensor) -> Tensor:
        direction = torch.as_tensor(self.light.direction, dtype=verts.dtype)
        return vertex_light(verts, self.faces, self.center, direction, self.config, self.face_mask)

    def _key_share(self, verts: Tensor) -> Tensor:
        """(V,) the share of each vertex's shading under `light` that its direct (key) part gives."""
        direction = torch.as_tensor(self.light.direction, dtype=verts.dtype)
        key = self.light.diffuse * (vertex_normals(verts, self.faces) @ (direction / direction.norm())).clamp_min(0)
        return key / (self.light.ambient + key)

    def _with_mouth(self, factor: Tensor, verts: Tensor) -> Tensor:
        """`factor` with the inside of the mouth's absolute light instead, when there is a mouth."""
        if self.mouth is None:
            return factor
        return torch.where(self.mouth.inside, self.mouth.light(verts, self.config).to(factor.dtype), factor)

    def shade(self, verts: Tensor) -> Tensor:
        """(V,) factor for the posed head `verts` (V, 3): on the skin its openness over the reference's, in
        [floor, 1] (ones for the reference pose itself); inside the mouth its own light, in [mouth_floor, 1]. The
        last pose's factor is kept, as a preview and a composite of one variant shade the same pose."""
        if self.held_factor is not None:
            return self.held_factor
        verts = verts.detach()
        if torch.equal(verts, self.reference_verts):
            return self._with_mouth(torch.ones(len(verts), dtype=verts.dtype), verts)
        last = self._last.get("pose")
        if last is not None and torch.equal(last[0], verts):
            return last[1]
        openness = vertex_openness(verts, self.faces, self.center, self.config, self.face_mask)
        factor = openness.clamp_min(0.05) / self.reference.clamp_min(0.05)
        if self.light is not None:  # newly in the key light's shadow: its direct light gone
            shadowed = (self.reference_light - self._light(verts)).clamp_min(0)
            factor = factor * (1 - shadowed * self._key_share(verts))
        factor = self._with_mouth(factor.clamp(self.config.floor, 1.0), verts)
        self._last["pose"] = (verts.clone(), factor)
        return factor

    def held(self, verts: Tensor) -> ExpressionOcclusion:
        """This occlusion shading every pose as it shades `verts` (V, 3): for many renders of poses close to
        one another (the refinement's steps), where measuring each would cost a tenth of a second."""
        return replace(self, held_factor=self.shade(verts))

    def darken(self, out: RenderOutput, verts: Tensor) -> RenderOutput:
        """`out` (a render of `verts`, (V, 3) or (B, V, 3) with every view wearing the same pose) with each
        covered pixel's colour times the factor of its surface point; gradients still reach the colour."""
        factor = self.shade(verts if verts.ndim == 2 else verts[0])
        if bool((factor == 1).all()):
            return out
        fragments = out.fragments
        corners = factor[self.faces[fragments.tri_id.clamp_min(0)]]  # (B, H, W, 3)
        per_pixel = (corners * fragments.bary).sum(-1)
        # Untouched exactly where every corner keeps its light (barycentrics may sum to 1 only within rounding).
        kept = (fragments.tri_id < 0) | (corners == 1).all(-1)
        per_pixel = torch.where(kept, torch.ones_like(per_pixel), per_pixel)
        return replace(out, rgb=out.rgb * per_pixel[..., None].to(out.rgb.dtype))
