"""A person's hair, assembled: mask -> geometry -> texture (and the hair painted on the scalp under it).

`build_hair` is the one place the hair stages are chained; `sie3d.avatar` calls it when
`ReconstructConfig.hair.enabled`, the eval harness and the contact-sheet script through the avatar API.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from sie3d.face.observation import FaceObservation
from sie3d.hair.geometry import HairConfig, HairMesh, filled_mask, hair_geometry
from sie3d.hair.texture import SCALP_MATERIALS, HairTexture, hair_texture, paint_scalp
from sie3d.head.fit import HeadFit
from sie3d.head.model import HeadModel
from sie3d.head.texture import HeadTextures

if TYPE_CHECKING:  # the mask (and its segmentation net) is not needed to load or draw a saved person's hair
    from sie3d.hair.mask import HairMask, PersonSegmenter

__all__ = ["HAIR_MATERIAL", "Hair", "build_hair", "scalp_tiles"]

HAIR_MATERIAL = "M_Hair"


@dataclass(frozen=True, eq=False)
class Hair:
    """The hair volume of a person (head space, cm; rigid with the head), its RGBA texture, the face and head
    tiles with the hair painted on the scalp under it (`scalp_tiles`, drawn instead of the person's when the hair is
    drawn), and what the mask said."""

    mesh: HairMesh
    texture: HairTexture
    scalp_tiles: dict[int, np.ndarray]
    mask_summary: dict
    timings: dict[str, float] = field(default_factory=dict)

    def material(self):
        """The hair's glTF/OBJ material: its RGBA texture (sRGB colour, linear alpha), alpha-blended and
        double-sided (the inside of the shell shows past the head), rough and not metallic."""
        from sie3d.export.mesh import Material
        from sie3d.head.texture import to_srgb8

        rgba = self.texture.rgba
        image = np.concatenate([to_srgb8(rgba[..., :3]), (rgba[..., 3:] * 255 + 0.5).astype(np.uint8)], -1)
        return Material(HAIR_MATERIAL, texture=image, roughness=0.8, double_sided=True, alpha_mode="BLEND")

    def summary(self) -> dict:
        """JSON-safe description for a report."""
        return {"mask": self.mask_summary, "vertices": int(len(self.mesh.verts)),
                "triangles": int(len(self.mesh.faces)), "lowest_y_cm": round(self.mesh.lowest_y, 2),
                "texture_seen_fraction": round(self.texture.seen, 3),
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}  # fmt: skip


def build_hair(photo_rgb: np.ndarray, observation: FaceObservation, fit: HeadFit, textures: HeadTextures,
               head: HeadModel, face_landmarks: np.ndarray, segmenter: PersonSegmenter,
               config: HairConfig, others: Sequence[FaceObservation] = ()) -> tuple[Hair | None, HairMask]:  # fmt: skip
    """The person's hair, or None when the photo shows a bald head or too little hair; and the mask it came
    from. `face_landmarks` (K, 468, 3): MediaPipe's landmarks on the fitted head under each of
    `envelope_expressions(fit)` (`sie3d.hair.geometry.face_landmarks_under_every_expression`). `others`: the
    photo's other faces (`sie3d.hair.mask.hair_mask`)."""
    from sie3d.hair.mask import hair_mask

    timings = {}
    start = time.perf_counter()
    mask = hair_mask(photo_rgb, observation, segmenter, others=others)
    timings["mask"] = time.perf_counter() - start
    start = time.perf_counter()
    mesh = hair_geometry(head, fit, face_landmarks, mask, config)
    timings["geometry"] = time.perf_counter() - start
    if mesh is None:
        return None, mask
    start = time.perf_counter()
    face_height = float(np.ptp(fit.project(face_landmarks[1, [10, 152]])[:, 1]))
    texture = hair_texture(photo_rgb, fit, mesh, filled_mask(mask.mask, (config.max_hole * face_height) ** 2),
                           textures.sh_lighting, observation.landmarks_px[:, :2], config,
                           headwear=mask.opaque)  # fmt: skip
    tiles = scalp_tiles(textures, head, fit, mesh, texture)
    timings["texture"] = time.perf_counter() - start
    return Hair(mesh, texture, tiles, mask.summary(), timings), mask


def scalp_tiles(textures: HeadTextures, head: HeadModel, fit: HeadFit, mesh: HairMesh,
                texture: HairTexture) -> dict[int, np.ndarray]:  # fmt: skip
    """The face and scalp tiles of `textures` with the hair (`mesh`, `texture`) painted on them (`paint_scalp`,
    on the person's head at rest): what `Hair.scalp_tiles` holds for those textures."""
    with torch.no_grad():
        rest = head(torch.from_numpy(fit.identity)[None], torch.from_numpy(fit.rest_expression)[None])[0].numpy()
    painted = paint_scalp(textures, head, rest, mesh.grid, texture).tiles
    return {tile: painted[tile] for tile in SCALP_MATERIALS.values() if tile in painted}
