"""The stages glued together: photo -> observation -> head fit -> texture -> files.

`Models` loads every network and the head model once; `reconstruct` runs the stages for one photo and
`write_reconstruction` writes what a 3D artist or game developer expects: a rigged GLB, an OBJ, previews,
the avatar in the photo and a report -- for the photo's own expression and for the neutral face.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sie3d import __version__
from sie3d.face.observation import FaceObservation
from sie3d.head.fit import FACE_OVAL, HeadFit
from sie3d.head.names import ICT_NAMES
from sie3d.head.texture import EYE_TILE, HIDDEN_MATERIALS, HeadTextures, render_layout
from sie3d.photo import Photo


@dataclass
class Models:
    """Every model the reconstruction needs, loaded once (about 3 s) and reused across photos."""

    observer: object
    embedder: object
    head: object
    fitter: object

    @staticmethod
    def load() -> Models:
        from sie3d.face.landmarker import FaceObserver
        from sie3d.face.sface import IdentityEmbedder
        from sie3d.head.fit import HeadFitter
        from sie3d.head.model import HeadModel

        head = HeadModel()
        return Models(FaceObserver(), IdentityEmbedder(), head, HeadFitter(head))

    def close(self) -> None:
        self.observer.close()


@dataclass(frozen=True)
class Reconstruction:
    photo: Photo
    observation: FaceObservation
    faces: list[FaceObservation]
    fit: HeadFit
    textures: HeadTextures
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def neutral_expression(self) -> np.ndarray:
        """The person's rest face: fitted eye/brow shape kept, emotional expression removed."""
        return self.fit.rest_expression

    @property
    def photo_expression(self) -> np.ndarray:
        return self.fit.expression


def reconstruct(photo: Photo, models: Models, face: int = 0, texture_size: int = 1024) -> Reconstruction:
    from sie3d.face import observe_photo
    from sie3d.head.texture import build_textures

    timings = {}
    start = time.perf_counter()
    chosen, faces = observe_photo(photo, models.observer, models.embedder, face=face)
    timings["observe"] = time.perf_counter() - start
    start = time.perf_counter()
    fit = models.fitter.fit(chosen)
    timings["fit"] = time.perf_counter() - start
    start = time.perf_counter()
    textures = build_textures(photo.rgb, chosen, fit, models.head, size=texture_size)
    timings["texture"] = time.perf_counter() - start
    return Reconstruction(photo, chosen, faces, fit, textures, timings, input_warnings(chosen, fit))


MAX_RELIABLE_YAW = 45.0  # degrees; beyond this one side of the face is mostly unseen
MAX_RELIABLE_FIT_ERROR = 0.05  # landmark error as a fraction of the eye distance


def input_warnings(obs: FaceObservation, fit: HeadFit) -> tuple[str, ...]:
    """Known ways a result degrades, said plainly (they also go into report.json)."""
    warnings = []
    width, height = obs.image_size
    x, y = obs.landmarks_px[:, 0], obs.landmarks_px[:, 1]
    outside = float(((x < 0) | (x >= width) | (y < 0) | (y >= height)).mean())
    if outside > 0.02:
        warnings.append(f"the face is cut off by the photo border ({100 * outside:.0f}% of the landmarks lie "
                        "outside): the hidden part is guessed from the head model and mirrored texture")
    yaw = obs.yaw_pitch_roll_degrees[0]
    if abs(yaw) > MAX_RELIABLE_YAW:
        warnings.append(f"the head is turned {abs(yaw):.0f}° away from the camera: the far side's shape and "
                        "texture are guessed (mirrored), use a more frontal photo for a faithful avatar")
    if fit.landmark_error_iod > MAX_RELIABLE_FIT_ERROR:
        warnings.append(f"the head model fits the landmarks poorly ({100 * fit.landmark_error_iod:.1f}% of the "
                        "eye distance): the face may be occluded, heavily distorted or not a human face")
    return tuple(warnings)


@dataclass(frozen=True)
class _ExportBase:
    """What every exported variant of one person shares: computed once, not per expression."""

    arrays: object  # IctArrays with sie3d's eye UVs
    identity_shape: np.ndarray  # (V, 3) the person's head with a zero expression, cm
    expression_basis: np.ndarray  # (53, V, 3) float32
    tiles_srgb: dict[int, np.ndarray]
    eye_textures: dict[str, np.ndarray]

    @staticmethod
    def build(result: Reconstruction, models: Models) -> _ExportBase:
        import torch

        # Export with sie3d's eye UVs (ICT's overlap; see `render_layout`), moved back from tile 7 into
        # [0, 1): the eye materials carry their own texture, so they need no tile of their own in glTF/OBJ.
        layout = render_layout(models.head)
        uvs = layout.uvs.copy()
        uvs[len(models.head.topology.uvs):, 0] -= EYE_TILE
        arrays = dataclasses.replace(models.head.arrays, uvs=uvs, uv_faces=layout.uv_faces.astype(np.int32))
        with torch.no_grad():
            identity_shape = models.head(identity=torch.from_numpy(result.fit.identity)[None])[0].numpy()
        tiles = result.textures.srgb_tiles()
        eye = tiles.pop(EYE_TILE)
        eyes = {m: eye for m in ("M_ScleraLeft", "M_IrisLeft", "M_ScleraRight", "M_IrisRight")}
        return _ExportBase(arrays, identity_shape, arrays.expression_basis.astype(np.float32), tiles, eyes)

    def mesh(self, weights: np.ndarray):
        from sie3d.export import avatar_mesh_from_ict

        verts = self.identity_shape + np.tensordot(weights, self.expression_basis, axes=1)
        return avatar_mesh_from_ict(self.arrays, verts=verts.astype(np.float32), textures_per_tile=self.tiles_srgb,
                                    weights=weights, textures_per_material=self.eye_textures,
                                    drop_materials=HIDDEN_MATERIALS)


def write_reconstruction(result: Reconstruction, models: Models, out: Path, formats=("glb", "obj"),
                         preview_size: int = 512) -> list[Path]:
    """Write `out/{expression,neutral}/` (avatar.glb, avatar.obj + .mtl + textures, preview.png,
    in_photo.png) and `out/report.json`. Returns the written paths."""
    from sie3d.export import write
    from sie3d.previews import TexturedHead, in_photo, preview_sheet, save_png

    textured = TexturedHead.build(models.head, render_layout(models.head), result.textures)
    written, timings = [], dict(result.timings)
    start = time.perf_counter()
    export_base = _ExportBase.build(result, models)
    timings["export_shared"] = time.perf_counter() - start
    for variant, weights in (("expression", result.photo_expression), ("neutral", result.neutral_expression)):
        folder = out / variant
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        save_png(preview_sheet(textured, result.fit.identity, weights, preview_size), folder / "preview.png")
        outline = result.fit.project(models.fitter.landmarks_3d(result.fit, weights)[list(FACE_OVAL)])
        composite = in_photo(textured, result.photo.rgb, result.fit, result.textures, weights, outline)
        save_png(composite, folder / "in_photo.png")
        timings[f"render_{variant}"] = time.perf_counter() - start
        written += [folder / "preview.png", folder / "in_photo.png"]
        start = time.perf_counter()
        written += write(export_base.mesh(weights), folder, formats=formats)
        timings[f"export_{variant}"] = time.perf_counter() - start
    report_path = out / "report.json"
    report_path.write_text(json.dumps(build_report(result, timings), indent=1))
    return [*written, report_path]


def build_report(result: Reconstruction, timings: dict[str, float]) -> dict:
    import torch

    from sie3d.assets import ict, registry

    def digest(path: Path) -> str:
        return registry.sha256_of(path)[:16] if path.is_file() else "missing"

    fit = result.fit
    return {
        "sie3d_version": __version__,
        "photo": str(result.photo.path) if result.photo.path else None,
        "photo_size": list(result.photo.original_size),
        "faces_found": len(result.faces),
        "warnings": list(result.warnings),
        "face": {k: v for k, v in result.observation.to_json().items() if k not in ("landmarks_px", "identity_sface")},
        "fit": fit.to_json(),
        "expression_photo": {n: round(float(v), 4) for n, v in zip(ICT_NAMES, fit.expression, strict=True)},
        "expression_neutral": {n: round(float(v), 4) for n, v in zip(ICT_NAMES, fit.rest_expression, strict=True)},
        "texture": {"coverage_from_photo": round(result.textures.coverage, 4),
                    "skin_albedo_linear": np.round(result.textures.skin_albedo, 4).tolist(),
                    "photo_lighting_sh": np.round(result.textures.sh_lighting, 4).tolist()},
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "assets": {
            **{a.name: {"package": a.requirement, "sha256": [f.sha256[:16] for f in a.files][0]}
               for a in registry.manifest().values()},
            "ict": {"commit": ict.ICT_COMMIT, "content_digest": ict.ICT_CONTENT_DIGEST[:16],
                    "cache_sha256": digest(ict.cache_path())},
        },
        "photo_sha256": hashlib.sha256(result.photo.rgb.tobytes()).hexdigest()[:16],
    }
