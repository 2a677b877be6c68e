"""Pictures of an avatar: a turntable preview sheet and the avatar composited back into the photo."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from PIL import Image, ImageFilter

from sie3d.head.fit import HeadFit
from sie3d.head.model import HeadModel
from sie3d.head.texture import (
    DARKEST_SHADING,
    EYE_SHADE,
    EYE_TILE,
    LASH_TILE,
    HeadTextures,
    RenderLayout,
    linear_to_srgb,
    polygon_mask,
)
from sie3d.render import Cameras, RenderOutput, draw_in_window, orbit_cameras, rasterize, render_mesh
from sie3d.render.renderer import STUDIO_LIGHT, DirectionalLight

if TYPE_CHECKING:
    from sie3d.hair.volume import Hair
    from sie3d.render.occlusion import ExpressionOcclusion

PREVIEW_YAWS = (0.0, 30.0, -30.0, 90.0)  # front, ±30°, profile
BACKGROUND = (0.93, 0.94, 0.95)  # light grey, linear
# Materials composited into the photo: the face and what shows through it; hair, ears and neck stay real.
IN_PHOTO_MATERIALS = ("M_Face", "M_ScleraLeft", "M_IrisLeft", "M_ScleraRight", "M_IrisRight", "M_Teeth",
                      "M_GumsTongue", "M_EyeLashes")  # fmt: skip
LASH_LIGHT = 0.8  # the lashes' shading: thin dark hair, lit mostly by what surrounds it
# Light into the mouth through the lips: teeth, gums and tongue are lit in proportion to the lips' opening
# (inner-lip distance over mouth width), from MOUTH_LIGHT[0] between closed lips to 1 at MOUTH_LIGHT[1].
MOUTH_LIGHT = (0.35, 0.08)
MOUTH_TILES = (2, 3)


@dataclass(frozen=True)
class TexturedHead:
    """What the renderer needs for one person: model, UV layout and texture tiles (as torch tensors)."""

    head: HeadModel
    layout: RenderLayout
    tiles: list[torch.Tensor]  # per tile id 0..7: (1, 3, S, S) linear albedo
    lash_alpha: np.ndarray | None = None  # (S, S) float of tile 6 when the textures have eyelash cards
    mouth_light: bool = False  # the detailed mouth: darken it as the lips close (`mouth_light`) and, with the
    # occlusion, by its depth behind the lips (`sie3d.render.occlusion.MouthInterior`)
    eye_shade: np.ndarray | None = None  # (S, S) alpha of the eye-occlusion shell's texture, when there is one
    hair: Hair | None = None  # drawn over the head, with its painted scalp tiles (`sie3d.hair`)
    occlusion: ExpressionOcclusion | None = None  # darkens what an expression deepens (`with_occlusion`)

    @staticmethod
    def build(head: HeadModel, layout: RenderLayout, textures: HeadTextures, mouth_light: bool = False,
              hair: Hair | None = None) -> TexturedHead:  # fmt: skip
        tiles = []
        for tile in range(EYE_TILE + 1):
            image = textures.tiles.get(tile, np.zeros((4, 4, 3), np.float32))  # 4, 5: hidden lacrimal shells
            tiles.append(torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)[None])
        lashes = textures.tiles.get(LASH_TILE)
        alpha = lashes[..., 3] if lashes is not None and lashes.shape[2] == 4 else None
        shade = textures.tiles.get(EYE_SHADE)
        return TexturedHead(head, layout, tiles, alpha, mouth_light, None if shade is None else shade[..., 3], hair)

    def with_occlusion(self, identity: np.ndarray, reference_expression: np.ndarray,
                       shadows: bool = False) -> TexturedHead:  # fmt: skip
        """This head, darkening in every render what the posed expression hides more than
        `reference_expression` (53,) does (`sie3d.render.occlusion`) -- and, with `shadows`, where it casts a
        shadow from the studio light's direction that the reference did not: the photo's own shading is in the
        texture already."""
        from sie3d.head.mouth import mouth_interior
        from sie3d.render.occlusion import ExpressionOcclusion, MouthInterior

        verts = self.verts(identity, reference_expression)
        mouth = None
        if self.mouth_light:  # the detailed mouth: lit through the lips' opening, by depth
            inner_lips = torch.from_numpy(np.asarray(self.head.topology.landmarks_68[60:68]))  # iBUG 68 numbering
            mouth = MouthInterior(torch.tensor(mouth_interior(self.head)), inner_lips)  # a copy of the cached mask
        occlusion = ExpressionOcclusion(verts, torch.from_numpy(self.head.topology.faces),
                                        face_center(self.head, verts), torch.from_numpy(self.layout.visible_faces),
                                        mouth, light=STUDIO_LIGHT if shadows else None)  # fmt: skip
        return replace(self, occlusion=occlusion)

    def verts(self, identity: np.ndarray, expression: np.ndarray) -> torch.Tensor:
        expression = torch.from_numpy(np.asarray(expression, np.float32))[None]
        with torch.no_grad():
            return self.head(torch.from_numpy(identity)[None], expression)[0]

    def render(self, verts: torch.Tensor, cams: Cameras, *, face_mask: np.ndarray | None = None,
               sh_coeffs: np.ndarray | None = None, background=BACKGROUND, detail: torch.Tensor | None = None,
               light: DirectionalLight = STUDIO_LIGHT) -> RenderOutput:
        """`render_mesh` of `verts` (V, 3), lit by `sh_coeffs` (the photo's lighting, `HeadTextures.sh_lighting`:
        the head shaded no darker than the de-lighting assumed, `DARKEST_SHADING`; the hair as the light gives) or
        else `light`;
        `detail`: optional (1, 3, S, S) surface detail of the face tile (`sie3d.head.wrinkles.WrinkleMaps
        .detail`). Differentiable in `verts`, `detail` and the tiles (the lashes and the lids' shade are
        drawn over the colour); no gradient is recorded when none of them requires one."""
        visible = self.layout.visible_faces if face_mask is None else self.layout.visible_faces & face_mask
        lighting = {"light": light} if sh_coeffs is None else {"sh_coeffs": torch.from_numpy(sh_coeffs)[None]}
        tiles = self.tiles
        if self.hair is not None:  # the hair painted on the scalp under it
            tiles = [torch.from_numpy(np.ascontiguousarray(self.hair.scalp_tiles[k])).permute(2, 0, 1)[None]
                     if k in self.hair.scalp_tiles else t for k, t in enumerate(tiles)]  # fmt: skip
        if self.mouth_light:
            inside = mouth_light(self.head, (verts if verts.ndim == 2 else verts[0]).detach())
            tiles = [t * inside if k in MOUTH_TILES else t for k, t in enumerate(tiles)]
        out = render_mesh(
            verts, torch.from_numpy(self.head.topology.faces), cams,
            uv=torch.from_numpy(self.layout.uvs), uv_faces=torch.from_numpy(self.layout.uv_faces),
            texture=tiles, face_mask=torch.from_numpy(visible), background=background,
            detail=None if detail is None else [detail], min_shading=None if sh_coeffs is None else DARKEST_SHADING,
            **lighting,
        )  # fmt: skip
        if self.occlusion is not None:
            out = self.occlusion.darken(out, verts)
        if self.eye_shade is not None:
            out = self._with_eye_shade(out, verts, cams, face_mask)
        if self.lash_alpha is not None:
            out = self._with_lashes(out, verts, cams, face_mask)
        if self.hair is not None:
            from sie3d.hair.render import draw_hair

            out = draw_hair(out, self.hair, cams, **lighting)
        return out

    def _with_eye_shade(self, out: RenderOutput, verts: torch.Tensor, cams: Cameras,
                        face_mask: np.ndarray | None) -> RenderOutput:
        """`out` with the lids' shade: where ICT's eye-occlusion shell lies in front of (or on) the rendered
        surface, the colour is multiplied by 1 - the shell texture's alpha (what a glTF viewer does when it
        blends the black shell over the eye)."""
        topo = self.head.topology
        shell = topo.faces_of("M_EyeOcclusion")
        if face_mask is not None:
            shell = shell[face_mask[shell]]
        if len(shell) == 0:
            return out
        corners = torch.from_numpy(np.unique(topo.faces[shell]))
        return draw_in_window(out, verts[..., corners, :], cams,
                              lambda part, window: self._eye_shade_over(part, verts, window, shell))  # fmt: skip

    def _eye_shade_over(self, out: RenderOutput, verts: torch.Tensor, cams: Cameras, shell: np.ndarray
                        ) -> RenderOutput:  # fmt: skip
        """`_with_eye_shade` of the shell's triangles `shell` on the whole of `out`."""
        topo = self.head.topology
        frags = rasterize(verts, torch.from_numpy(topo.faces[shell]), cams)
        depth = out.drawn_depth()
        hit = (frags.tri_id >= 0) & (frags.depth <= depth + 0.12)  # the shell hugs the eyeball (the cornea bulges
        # through it by up to 1 mm); the lids lie further in front
        if not bool(hit.any()):
            return out
        tri = shell[frags.tri_id[hit].numpy()]
        uv = (topo.uvs[topo.uv_faces[tri]] * frags.bary[hit].numpy()[..., None]).sum(1)
        size = self.eye_shade.shape[0]
        col = np.clip((uv[:, 0] * size).astype(int), 0, size - 1)
        row = np.clip(((1.0 - uv[:, 1]) * size).astype(int), 0, size - 1)
        keep = torch.from_numpy(1.0 - self.eye_shade[row, col]).to(out.rgb.dtype)
        rgb = out.rgb.clone()
        rgb[hit] = rgb[hit] * keep[:, None]
        return RenderOutput(rgb, out.alpha, out.depth, out.normals, out.fragments)

    def _with_lashes(self, out: RenderOutput, verts: torch.Tensor, cams: Cameras,
                     face_mask: np.ndarray | None) -> RenderOutput:
        """`out` with the eyelash cards drawn over it, alpha-tested as a glTF viewer does with alphaMode
        MASK: a card's pixel shows where its texture's alpha is at least 0.5 and it lies in front of the
        rendered surface. The cards are layered (three per lid); each layer is rasterised alone, so a
        transparent part of a front card does not hide the strands of the card behind it."""
        topo = self.head.topology
        layers = [layer if face_mask is None else layer[face_mask[layer]] for layer in _lash_layers(self.head)]
        layers = [layer for layer in layers if len(layer)]
        if not layers:
            return out
        corners = torch.from_numpy(np.unique(topo.faces[np.concatenate(layers)]))
        return draw_in_window(out, verts[..., corners, :], cams,
                              lambda part, window: self._lashes_over(part, verts, window, layers))  # fmt: skip

    def _lashes_over(self, out: RenderOutput, verts: torch.Tensor, cams: Cameras, layers: list[np.ndarray]
                     ) -> RenderOutput:  # fmt: skip
        """`_with_lashes` of the cards' triangles in `layers` on the whole of `out`."""
        topo = self.head.topology
        rgb = out.rgb.clone()
        depth = out.drawn_depth()
        colour = torch.from_numpy(np.ascontiguousarray(self.tiles[LASH_TILE][0, :, 0, 0].numpy() * LASH_LIGHT))
        size = self.lash_alpha.shape[0]
        for layer in layers:
            frags = rasterize(verts, torch.from_numpy(topo.faces[layer]), cams)
            hit = frags.tri_id >= 0
            if not bool(hit.any()):
                continue
            tri = layer[frags.tri_id[hit].numpy()]
            uv = (self.layout.uvs[self.layout.uv_faces[tri]] * frags.bary[hit].numpy()[..., None]).sum(1)
            col = np.clip(((uv[:, 0] - LASH_TILE) * size).astype(int), 0, size - 1)
            row = np.clip(((1.0 - uv[:, 1]) * size).astype(int), 0, size - 1)
            keep = torch.from_numpy(self.lash_alpha[row, col] >= 0.5) & (frags.depth[hit] < depth[hit])
            index = hit.nonzero()[keep]
            rgb[index[:, 0], index[:, 1], index[:, 2]] = colour.to(rgb.dtype)
            depth[index[:, 0], index[:, 1], index[:, 2]] = frags.depth[hit][keep]
        return RenderOutput(rgb, out.alpha, out.depth, out.normals, out.fragments)


def mouth_light(head: HeadModel, verts: torch.Tensor) -> float:
    """How much light reaches the inside of the mouth of the posed head `verts` (V, 3): MOUTH_LIGHT[0]
    with closed lips, rising with the inner-lip opening over the mouth width to 1 (a baked texture cannot
    know the pose; between nearly closed lips the teeth sit in shadow, not in the studio light)."""
    ids = head.topology.landmarks_68[[62, 66, 48, 54]]  # inner lips' midpoints, mouth corners (iBUG 68)
    v = verts[torch.from_numpy(np.asarray(ids))].double()
    opening = float(torch.linalg.norm(v[0] - v[1]) / torch.linalg.norm(v[2] - v[3]).clamp_min(1e-6))
    low, full = MOUTH_LIGHT
    return float(np.clip(low + (1 - low) * opening / full, low, 1.0))


@lru_cache(maxsize=2)
def _lash_layers(head: HeadModel) -> list[np.ndarray]:
    """The eyelash triangles in layers: ICT stacks three cards per lid; layer k holds every lid's k-th
    card (cards of different lids do not overlap)."""
    from sie3d.head.texture import material_parts

    topo = head.topology
    tris = topo.faces_of("M_EyeLashes")
    card = material_parts(head, "M_EyeLashes")[topo.faces[tris, 0]]
    neutral = head.neutral.numpy()
    layers: dict[tuple[bool, float], list[int]] = {}
    for k in range(card.max() + 1):
        members = tris[card == k]
        centre = neutral[np.unique(topo.faces[members])].mean(0)
        # the cards of one lid share their centre within millimetres (upper lids near y = 3.7, lower 2.9)
        layers.setdefault((bool(centre[0] > 0), round(float(centre[1]))), []).append(k)
    out: list[list[np.ndarray]] = [[], [], []]
    for cards in layers.values():
        for rank, k in enumerate(cards[:3]):
            out[rank].append(tris[card == k])
    return [np.concatenate(layer) for layer in out if layer]


def to_image(linear_rgb: torch.Tensor) -> np.ndarray:
    """(H, W, 3) linear RGB tensor -> uint8 sRGB array."""
    return (linear_to_srgb(linear_rgb.numpy()) * 255 + 0.5).astype(np.uint8)


def preview_sheet(textured: TexturedHead, identity: np.ndarray, expression: np.ndarray, size: int = 512,
                  yaws: tuple[float, ...] = PREVIEW_YAWS, detail: torch.Tensor | None = None,
                  sh_coeffs: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """(size, len(yaws) * size, 3) uint8: the head from the front, at ±30° and in profile (with the face's
    surface `detail` and lit by `sh_coeffs` or the studio light, see `TexturedHead.render`)."""
    verts = textured.verts(identity, expression)
    cams = preview_cameras(textured.head, verts, yaws, size)
    views = textured.render(verts, cams, detail=detail, sh_coeffs=sh_coeffs).rgb
    return np.concatenate([to_image(view) for view in views], axis=1)


def face_center(head: HeadModel, verts: torch.Tensor) -> torch.Tensor:
    """(3,) the mean of the face skin's (M_Face) vertices of the posed head `verts` (V, 3)."""
    return verts[np.unique(head.topology.faces[head.topology.faces_of("M_Face")])].mean(0)


def preview_cameras(head: HeadModel, verts: torch.Tensor, yaws: tuple[float, ...] = PREVIEW_YAWS, size: int = 512,
                    pitch: float = 0.0) -> Cameras:  # fmt: skip
    """The preview's cameras (head space, cm) around `verts` (V, 3): one per yaw in degrees, size x size px,
    aimed at the centre of the head, `pitch` degrees above it."""
    target = face_center(head, verts) + torch.tensor([0.0, 1.0, -3.0])  # the head's centre, not the face's
    focal = 1.2 * size
    return orbit_cameras(list(yaws), distance=focal / size * 33.0, target=target, focal_px=focal, width=size,
                         height=size, pitch_degrees=pitch)  # fmt: skip


# A face smaller than this (the oval's height, px) is rendered into the photo at an integer multiple of the photo's
# resolution and averaged down (`in_photo`): at the photo's own, a face of a 512-px snapshot had eyes 25 px wide,
# and its eyelash strands and lid edges came out as single black and white pixels.
SUPERSAMPLE_BELOW_PX = 256
MAX_SUPERSAMPLING = 3


def supersampling(face_outline_px: np.ndarray) -> int:
    """How many render pixels per photo pixel (per side) `in_photo` draws a face of this outline with."""
    height = float(np.ptp(face_outline_px[:, 1]))
    return int(min(MAX_SUPERSAMPLING, max(1, np.ceil(SUPERSAMPLE_BELOW_PX / max(height, 1.0)))))


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """(H * factor, W * factor, ...) -> (H, W, ...): the mean of each factor x factor block."""
    if factor == 1:
        return image
    height, width = image.shape[0] // factor, image.shape[1] // factor
    return image.reshape(height, factor, width, factor, *image.shape[2:]).mean((1, 3))


def in_photo(textured: TexturedHead, photo_rgb: np.ndarray, fit: HeadFit, textures: HeadTextures,
             expression: np.ndarray, face_outline_px: np.ndarray, detail: torch.Tensor | None = None,
             factor: int | None = None, covered: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the avatar rendered with the photo's own camera and lighting, composited over the
    photo's face with a feathered mask (the person's real hair, ears, neck and background stay).

    `photo_rgb` (H, W, 3) uint8 is the photo or a window of it, `fit` the fit whose camera sees exactly
    that image (`HeadFit.crop` for a window); `face_outline_px` (N, 2): the face oval of the rendered
    expression in those pixels. The composite stays inside the oval (slightly widened), so the neck and
    the bald scalp of the model never show, and where the hair volume lies in front of the face (a fringe) the
    photo is kept too: its own hair stays over the forehead; so is it where `covered` (H, W bool) says something
    lies over the face (a hand, `sie3d.face.hands.hand_mask`). Every pixel is rendered; see `in_photo_face_region`.
    A small face is rendered `factor` times finer per side and averaged down (default: `supersampling`)."""
    height, width = photo_rgb.shape[:2]
    factor = supersampling(face_outline_px) if factor is None else factor
    fine = fit.crop(0.0, 0.0, (width * factor, height * factor), float(factor)) if factor > 1 else fit
    hair, textured = textured.hair, replace(textured, hair=None)  # the photo's own hair stays
    cams = Cameras(torch.from_numpy(fine.intrinsics)[None], torch.from_numpy(fine.world_to_camera)[None],
                   width * factor, height * factor)
    topo = textured.head.topology
    face_mask = np.isin(np.arange(len(topo.faces)), topo.faces_of(*IN_PHOTO_MATERIALS))
    # Occlusion by the rest of the head matters (the nose hides a cheek); draw everything, keep the face.
    out = textured.render(textured.verts(fit.identity, expression), cams, sh_coeffs=textures.sh_lighting,
                          detail=detail)
    frags = out.fragments.tri_id[0].numpy()
    inside = polygon_mask(face_outline_px * factor, (width * factor, height * factor), shrink=0.02)
    keep = (frags >= 0) & face_mask[np.maximum(frags, 0)] & inside
    if hair is not None:
        keep &= ~_hair_in_front(hair, fine, cams, out, inside)
    keep = _block_mean(keep.astype(np.float32), factor) >= 0.5
    if covered is not None:
        keep &= ~covered
    # Erode by the feather width, then blur: the blend finishes inside the face, so neither the rendered
    # jaw silhouette nor the model's bald forehead edge shows.
    feather = _feather_px(face_outline_px)
    kernel = np.ones((2 * round(feather) + 1,) * 2, np.uint8)  # erosion = PIL's MinFilter, but separable: fast
    mask = Image.fromarray(cv2.erode((keep * 255).astype(np.uint8), kernel))
    alpha = np.asarray(mask.filter(ImageFilter.GaussianBlur(feather)), np.float32)[..., None] / 255.0
    if covered is not None:  # the blur's tail stops at the hand: it is the photo's, every pixel of it
        alpha[covered] = 0.0
    rendered = to_image(torch.from_numpy(_block_mean(out.rgb[0].numpy(), factor))).astype(np.float32)
    return (rendered * alpha + photo_rgb.astype(np.float32) * (1 - alpha) + 0.5).astype(np.uint8)


def _hair_in_front(hair: Hair, fit: HeadFit, cams: Cameras, out: RenderOutput, region: np.ndarray) -> np.ndarray:
    """(H, W) bool: where the hair volume's near side (alpha >= 0.5) lies in front of the rendered head, drawing
    only the hair's triangles with a corner in `region` (H, W bool: the face's oval)."""
    from sie3d.hair.render import near_hair_alpha

    height, width = region.shape
    px = np.round(fit.project(hair.mesh.verts)).astype(int)
    corner_in = np.zeros(len(px), bool)
    on_image = (px[:, 0] >= 0) & (px[:, 0] < width) & (px[:, 1] >= 0) & (px[:, 1] < height)
    corner_in[on_image] = region[px[on_image, 1], px[on_image, 0]]
    faces = hair.mesh.faces[corner_in[hair.mesh.faces].any(1)]
    if len(faces) == 0:
        return np.zeros_like(region)
    return near_hair_alpha(out, hair, cams, faces)[0].numpy() >= 0.5


def _feather_px(face_outline_px: np.ndarray) -> float:
    """Width of the composite's soft edge: 2.5% of the face height, at least 2 px."""
    return max(2.0, 0.025 * float(np.ptp(face_outline_px[:, 1])))


def in_photo_face_region(textured: TexturedHead, photo_rgb: np.ndarray, fit: HeadFit, textures: HeadTextures,
                         expression: np.ndarray, face_outline_px: np.ndarray,
                         detail: torch.Tensor | None = None, covered: np.ndarray | None = None) -> np.ndarray:
    """`in_photo` of a whole (large) photo at its resolution, rendering only the face's region: outside
    it the mask is zero and the photo stays as it is. Equal to `in_photo` but where float rounding of
    the moved camera flips which of two nearly coincident triangles (lid and eyeball, teeth and mouth
    socket) wins a pixel: a few dozen pixels, and, when such a pixel opens a hole in the face mask, the
    mask's erosion around it (a patch a few feather widths across; seen inside a wide-open mouth)."""
    height, width = photo_rgb.shape[:2]
    # The mask is eroded by the feather width, then blurred (PIL's box passes reach 3 x the width): alpha
    # is 0 beyond 2 widths outside the oval, and the blur at the region's border sees only zeros.
    margin = int(np.ceil(3 * _feather_px(face_outline_px))) + 4
    (low_x, low_y), (high_x, high_y) = face_outline_px.min(0), face_outline_px.max(0)
    x0, y0 = max(0, int(np.floor(low_x)) - margin), max(0, int(np.floor(low_y)) - margin)
    x1, y1 = min(width, int(np.ceil(high_x)) + margin), min(height, int(np.ceil(high_y)) + margin)
    out = photo_rgb.copy()
    if x1 > x0 and y1 > y0:  # else the face lies outside the photo
        region = fit.crop(x0, y0, (x1 - x0, y1 - y0))
        out[y0:y1, x0:x1] = in_photo(textured, photo_rgb[y0:y1, x0:x1], region, textures, expression,
                                     face_outline_px - np.array([x0, y0], np.float32), detail,
                                     covered=None if covered is None else covered[y0:y1, x0:x1])  # fmt: skip
    return out


def save_png(image: np.ndarray, path) -> None:
    """Write an (H, W, 3|4) uint8 image as PNG (the exporters' encoder and compression level)."""
    from sie3d.export.mesh import texture_png

    Path(path).write_bytes(texture_png(image))
