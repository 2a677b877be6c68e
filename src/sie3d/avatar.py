"""One reconstructed person, and everything made from it.

Every surface (the CLI, the web server's workers, the evaluation, the gallery, the benchmarks) goes through
this module:

    models = Models.load()                       # every model, each loaded on first use
    person = reconstruct(load_photo(path), models, ReconstructConfig(texture_size=1024))
    person.save(folder); Person.load(folder)     # a versioned folder, loaded back exactly
    write_outputs(person, models, [Variant("smile", coefficients)], out)

A `Person` is what the photo says about someone: the observation, the fitted head (identity, pose,
camera, the photo's expression and the resting eye/brow shape) and the textures. Posing is a pure
function of (person, coefficients): `render_views`, `render_preview` and `composite` draw a person with
any (53,) ICT expression, and a `Variant` names one such pose for `write_outputs`, which writes a
folder of files per variant (GLB, OBJ, previews, the avatar in the photo) and one report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import re
import shutil
import time
import weakref
import zipfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sie3d import __version__
from sie3d.errors import PersonError, UsageError
from sie3d.expressions import EYE_GAZE, check_gaze, with_gaze
from sie3d.face.observation import FaceObservation
from sie3d.hair.config import HairConfig
from sie3d.head.fit import FACE_OVAL, HeadFit
from sie3d.head.names import ICT_NAMES
from sie3d.head.texture import HeadTextures, TextureConfig
from sie3d.lighting import check_light
from sie3d.photo import Photo

if TYPE_CHECKING:
    from sie3d.face.hands import HandDetector
    from sie3d.face.landmarker import FaceObserver
    from sie3d.face.sface import IdentityEmbedder
    from sie3d.hair.segmentation import PersonSegmenter
    from sie3d.hair.volume import Hair
    from sie3d.head.fit import HeadFitter
    from sie3d.head.model import HeadModel
    from sie3d.head.wrinkles import WrinkleMaps
    from sie3d.refine import Perception, RefineConfig
    from sie3d.render import Cameras
    from sie3d.semantics.interpret import Interpretation, TextModel

N_COEFFICIENTS = len(ICT_NAMES)  # 53 ICT expression coefficients


# -- models ------------------------------------------------------------------------------------------


class Models:
    """Every model sie3d uses, each loaded on first use and then kept: one instance per process.

    A command that only observes never loads the head model; one that only renders a saved person never
    starts MediaPipe. `close()` releases what was loaded (the MediaPipe tasks)."""

    @cached_property
    def observer(self) -> FaceObserver:
        """MediaPipe face landmarker + detector (about 1 s to start)."""
        from sie3d.face.landmarker import FaceObserver

        return FaceObserver()

    @cached_property
    def embedder(self) -> IdentityEmbedder:
        """SFace identity embedding."""
        from sie3d.face.sface import IdentityEmbedder

        return IdentityEmbedder()

    @cached_property
    def head(self) -> HeadModel:
        """The ICT-FaceKit head model."""
        from sie3d.head.model import HeadModel

        return HeadModel()

    @cached_property
    def fitter(self) -> HeadFitter:
        """The landmark fit, on `head`."""
        from sie3d.head.fit import HeadFitter

        return HeadFitter(self.head)

    @cached_property
    def hands(self) -> HandDetector:
        """MediaPipe's palm detection and hand landmarks, to keep hands over the face out of the texture."""
        from sie3d.face.hands import HandDetector

        return HandDetector()

    @cached_property
    def segmenter(self) -> PersonSegmenter:
        """MediaPipe's selfie segmentation, for the hair mask (loaded only when hair is made)."""
        from sie3d.hair.segmentation import PersonSegmenter

        return PersonSegmenter()

    @cached_property
    def wrinkles(self) -> WrinkleMaps:
        """Expression wrinkle maps of `head` (read from the cache folder, else built once: about 3 s)."""
        from sie3d.head.wrinkles import wrinkle_maps

        return wrinkle_maps(self.head)

    @cached_property
    def text(self) -> TextModel:
        """The sentence encoder + conditioning network (loaded only when a text is given)."""
        from sie3d.semantics.interpret import TextModel

        return TextModel()

    @cached_property
    def perception(self) -> Perception:
        """The frozen networks the perceptual refinement looks through (loaded only when refining)."""
        from sie3d.refine import load_perception

        return load_perception(self.embedder.model)

    @staticmethod
    def load() -> Models:
        """A lazy instance: cheap; each model loads when first used."""
        return Models()

    def preload(self, *names: str) -> Models:
        """Load the named models (default: every model) now, e.g. to time them apart from the first photo."""
        for name in names or [n for n, v in vars(Models).items() if isinstance(v, cached_property)]:
            getattr(self, name)
        return self

    def close(self) -> None:
        observer = self.__dict__.pop("observer", None)
        if observer is not None:
            observer.close()

    def __enter__(self) -> Models:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the person --------------------------------------------------------------------------------------


# Settings a saved person's config may name that sie3d no longer has, per part: read and ignored.
_RETIRED_SETTINGS = {
    "hair": {"min_curtain_deg"},  # December 4: hanging hair's length is read beside the neck instead
    "texture": {"gaze"},  # December 4: the gaze shapes turn the eyes; the fit turns them as the photo's look
}


@dataclass(frozen=True)
class ReconstructConfig:
    """How a photo becomes a `Person` (recorded in the person and in every report)."""

    face: int = 0  # which face of the photo, 0 = the largest
    texture_size: int = 1024  # texels per side of the face and head tiles (mouth and eye tiles: half)
    texture: TextureConfig = TextureConfig()  # eyes, eyelashes and mouth
    hair: HairConfig = HairConfig()  # the hair volume (on by default: `sie3d.hair`)
    # Where the neutral face (and every expression that does not turn the eyes itself) looks: "ahead" (at
    # infinity, straight out of the face) or "photo" (where the photo's irises look: at the photographer). The
    # fit and the textures are the same either way; `Person.rest_gaze`.
    gaze: str = "ahead"

    @staticmethod
    def from_json(data: dict) -> ReconstructConfig:
        """The inverse of `to_json` (a person saved before `texture` existed gets the plain textures it had, one
        saved before `hair` existed no hair: it was made without; hair settings since retired are left out, the
        saved hair keeps the shape they gave it)."""
        from sie3d.head.texture import PLAIN_TEXTURES

        data = dict(data)
        def current(part: str) -> dict:
            return {k: v for k, v in data.pop(part).items() if k not in _RETIRED_SETTINGS[part]}

        texture = TextureConfig(**current("texture")) if "texture" in data else PLAIN_TEXTURES
        hair = HairConfig(**current("hair")) if "hair" in data else HairConfig(enabled=False)
        return ReconstructConfig(**data, texture=texture, hair=hair)

    def __post_init__(self) -> None:
        if self.face < 0:
            raise UsageError(f"--face {self.face} is negative", "use 0 for the largest face, 1 for the next ...")
        check_gaze(self.gaze, "--gaze")
        size = self.texture_size
        if not 256 <= size <= 4096 or size & (size - 1):
            raise UsageError(f"--texture-size {size} is not a power of two in [256, 4096]",
                             "use 512, 1024 (default) or 2048")  # fmt: skip

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


PERSON_FORMAT = "sie3d-person"
# 2: the hair volume is saved too (version 1 folders, without it, still load); 3: the gaze shapes turn the eyes
# and the fit turns them to the photo's irises (older folders still load, with a warning: `_PAINTED_GAZE`).
PERSON_FORMAT_VERSION = 3
READABLE_PERSON_FORMATS = (1, 2, 3)
_PAINTED_GAZE = ("saved before the gaze shapes turned the eyes: its eyes were fitted and textured for eyeballs that "
                 "did not turn, so they may look off; run `sie3d reconstruct PHOTO -o OUT` again")
_PERSON_JSON, _PERSON_ARRAYS, _PERSON_PHOTO = "person.json", "arrays.npz", "photo.png"


def _no_hands() -> np.ndarray:
    """(0, 21, 2) float32: `Person.hands` of a photo without hands (or a folder saved before they were sought)."""
    return np.zeros((0, 21, 2), np.float32)


@dataclass(frozen=True, eq=False)
class Person:
    """A reconstructed person: the photo, the chosen face and every face found, the fitted head and its
    textures, plus what went wrong (`warnings`) and how long each stage took in this process (`timings`, seconds:
    observe, fit, texture when reconstructed; load_person when loaded -- person.json keeps the original run's)."""

    photo: Photo
    observation: FaceObservation  # the chosen face
    faces: tuple[FaceObservation, ...]  # every face found, largest first (the chosen one among them)
    fit: HeadFit
    textures: HeadTextures
    warnings: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    config: ReconstructConfig = ReconstructConfig()
    hair: Hair | None = None  # with `config.hair.enabled` and hair in the photo
    hair_made: bool = False  # the hair stage ran (then None is a bald head); never for a folder of format 1
    # (K, 21, 2) photo pixels: the hands found in the photo (`sie3d.face.hands`), kept out of the texture and in
    # front of the composite; none for a folder saved before hands were looked for
    hands: np.ndarray = field(default_factory=_no_hands)

    @property
    def hair_note(self) -> str | None:
        """What the hair volume is when it may not be hair (the hair mask's verdict; its notes in the report say
        why), else None: a hat (headwear with colours of its own, `HairMask.opaque`) or perhaps headwear."""
        summary = self.hair.mask_summary if self.hair is not None else {}
        if summary.get("opaque"):
            return "a hat made as the hair, its colours kept"
        if summary.get("kind") == "headwear-or-hair":
            return "perhaps headwear or dyed hair, made as the hair (report.json: hair, mask, notes)"
        return None

    @property
    def rest_expression(self) -> np.ndarray:
        """(53,) the person's resting face: the fitted eye/brow shape kept, the emotional expression removed,
        looking where `rest_gaze` looks."""
        return with_gaze(self.fit.rest_expression, self.rest_gaze)

    def looking(self, gaze: str | None) -> Person:
        """This person with its neutral face looking as `gaze` says (`ReconstructConfig.gaze`; None or its own:
        this very person, so that a caller can tell nothing changed)."""
        if gaze is None or gaze == self.config.gaze:
            return self
        return dataclasses.replace(self, config=dataclasses.replace(self.config, gaze=gaze))

    @property
    def rest_gaze(self) -> np.ndarray:
        """(53,) where the person looks when an expression does not turn the eyes itself (only the gaze shapes
        are non-zero): straight ahead (zeros) or, with `ReconstructConfig.gaze` "photo", the photo's gaze as
        fitted (an eye closed in the photo looks ahead)."""
        gaze = np.zeros_like(self.fit.expression)
        if self.config.gaze == "photo":
            shapes = [k for side in EYE_GAZE.values() for k in side]
            gaze[shapes] = self.fit.expression[shapes]
        return gaze

    @property
    def photo_expression(self) -> np.ndarray:
        """(53,) the expression fitted to the photo (rest + emotional)."""
        return self.fit.expression

    def save(self, folder: str | Path) -> Path:
        """Write the person to `folder` (created if needed): ``person.json`` (format version, scalars,
        checksums), ``arrays.npz`` (every array, float32 exactly; the hair volume's too, when there is one) and
        ``photo.png`` (the photo's pixels). `Person.load` gives back an equal person. Returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        faces = [_face_to_json(f, f"faces.{k}", arrays) for k, f in enumerate(self.faces)]
        fit = self.fit
        for name in ("identity", "expression", "rest_expression", "rotation", "translation"):
            arrays[f"fit.{name}"] = getattr(fit, name)
        for tile, image in self.textures.tiles.items():
            arrays[f"textures.tile{tile}"] = _byte_planes(image)
        arrays["textures.sh_lighting"] = self.textures.sh_lighting
        arrays["hands.landmarks_px"] = np.asarray(self.hands, np.float32).reshape(-1, 21, 2)
        arrays["textures.skin_albedo"] = self.textures.skin_albedo
        meta = {
            "format": PERSON_FORMAT,
            "format_version": PERSON_FORMAT_VERSION,
            "sie3d_version": __version__,
            "config": self.config.to_json(),
            "photo": {"path": str(self.photo.path) if self.photo.path else None,
                      "original_size": list(self.photo.original_size), "scale": self.photo.scale},
            "observation": _face_to_json(self.observation, "observation", arrays),
            "faces": faces,
            "fit": {"focal_px": fit.focal_px, "principal_px": list(fit.principal_px),
                    "image_size": list(fit.image_size), "landmark_error_px": fit.landmark_error_px,
                    "landmark_error_iod": fit.landmark_error_iod,
                    "seconds": fit.seconds, "extras": fit.extras},
            "textures": {"tiles": {k: list(v.shape) for k, v in sorted(self.textures.tiles.items())},
                         "tile_encoding": "float32 byte planes", "coverage": self.textures.coverage},
            "hair": None if self.hair is None else _hair_to_json(self.hair, self.textures, arrays),
            "warnings": list(self.warnings),
            "timings": self.timings,
        }  # fmt: skip
        # The hair's synthesized texture and painted scalp texels are noise to zlib (40% smaller for 80 ms): kept as is.
        _write_npz(folder / _PERSON_ARRAYS, arrays, stored=[k for k in arrays if k.startswith(_HAIR_STORED)])
        from sie3d.export.mesh import texture_png

        (folder / _PERSON_PHOTO).write_bytes(texture_png(self.photo.rgb))
        meta["files"] = {name: _sha256(folder / name) for name in (_PERSON_ARRAYS, _PERSON_PHOTO)}
        (folder / _PERSON_JSON).write_text(json.dumps(meta, indent=1))
        return folder

    @staticmethod
    def load(folder: str | Path) -> Person:
        """The person saved in `folder` by `Person.save`; a `PersonError` when the folder holds no person,
        one of another format version, or a damaged one."""
        start = time.perf_counter()
        folder = Path(folder)
        meta = read_person_json(folder)
        fix = "run `sie3d reconstruct PHOTO -o OUT` again to save the person anew"
        for name, digest in meta.get("files", {}).items():
            path = folder / name
            if not path.is_file():
                raise PersonError(f"{folder} is damaged: {name} is missing", fix)
            if _sha256(path) != digest:
                raise PersonError(f"{folder} is damaged: {name} does not match its checksum", fix)
        try:
            from PIL import Image

            with np.load(folder / _PERSON_ARRAYS, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            with Image.open(folder / _PERSON_PHOTO) as image:
                rgb = np.asarray(image.convert("RGB"), np.uint8)
            p, f, t = meta["photo"], meta["fit"], meta["textures"]
            photo = Photo(np.ascontiguousarray(rgb), Path(p["path"]) if p["path"] else None,
                          tuple(p["original_size"]), float(p["scale"]))  # fmt: skip
            fit = HeadFit(
                identity=arrays["fit.identity"], expression=arrays["fit.expression"],
                rest_expression=arrays["fit.rest_expression"], rotation=arrays["fit.rotation"],
                translation=arrays["fit.translation"], focal_px=float(f["focal_px"]),
                principal_px=tuple(f["principal_px"]), image_size=tuple(f["image_size"]),
                landmark_error_px=float(f["landmark_error_px"]), landmark_error_iod=float(f["landmark_error_iod"]),
                seconds=float(f["seconds"]), extras=dict(f["extras"]),
            )  # fmt: skip
            textures = HeadTextures({int(k): _from_byte_planes(arrays[f"textures.tile{k}"], shape)
                                     for k, shape in t["tiles"].items()},
                                    arrays["textures.sh_lighting"], arrays["textures.skin_albedo"],
                                    float(t["coverage"]))  # fmt: skip
            hair = _hair_from_json(meta["hair"], textures, arrays) if meta.get("hair") else None  # none in version 1
            config = ReconstructConfig.from_json(meta["config"])
            painted = meta["format_version"] < 3
            return Person(
                photo=photo, observation=_face_from_json(meta["observation"], "observation", arrays),
                faces=tuple(_face_from_json(j, f"faces.{k}", arrays) for k, j in enumerate(meta["faces"])),
                fit=fit, textures=textures, warnings=(*meta["warnings"], *[_PAINTED_GAZE] * painted),
                timings={"load_person": time.perf_counter() - start},  # this process's work, not the saved run's
                config=config, hair=hair, hair_made=config.hair.enabled and meta["format_version"] >= 2,
                hands=arrays.get("hands.landmarks_px", _no_hands()),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile) as exc:
            raise PersonError(f"{folder} is damaged: {type(exc).__name__}: {exc}", fix) from None


def read_person_json(folder: Path) -> dict:
    """The checked ``person.json`` of a saved person folder (format and version), else a `PersonError`."""
    path = folder / _PERSON_JSON
    if not path.is_file():
        raise PersonError(f"{folder} is not a saved person (no {_PERSON_JSON})",
                          "pass the person/ folder that `sie3d reconstruct` writes")  # fmt: skip
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != PERSON_FORMAT:
        raise PersonError(f"{path} is not a sie3d person file (or is damaged)",
                          "run `sie3d reconstruct PHOTO -o OUT` again to save the person anew")  # fmt: skip
    version = meta.get("format_version")
    if version not in READABLE_PERSON_FORMATS:
        newer = isinstance(version, int) and version > PERSON_FORMAT_VERSION
        raise PersonError(
            f"{folder} holds a person in format version {version}; this sie3d ({__version__}) reads versions "
            f"{READABLE_PERSON_FORMATS[0]} to {PERSON_FORMAT_VERSION}",
            "upgrade sie3d to read it" if newer else "reconstruct the photo again with this sie3d")
    return meta


def _face_to_json(face: FaceObservation, key: str, arrays: dict[str, np.ndarray]) -> dict:
    """Scalars of `face` as JSON; its arrays go into `arrays` under ``key.<name>``."""
    arrays[f"{key}.landmarks_px"], arrays[f"{key}.blendshapes"] = face.landmarks_px, face.blendshapes
    arrays[f"{key}.head_pose"] = face.head_pose
    if face.identity is not None:
        arrays[f"{key}.identity"] = face.identity
    confidence = None if np.isnan(face.confidence) else float(face.confidence)
    return {"index": face.index, "box": [float(v) for v in face.box], "confidence": confidence,
            "image_size": list(face.image_size), "identity": face.identity is not None, "extras": face.extras}


def _face_from_json(meta: dict, key: str, arrays: dict[str, np.ndarray]) -> FaceObservation:
    return FaceObservation(
        landmarks_px=arrays[f"{key}.landmarks_px"], blendshapes=arrays[f"{key}.blendshapes"],
        head_pose=arrays[f"{key}.head_pose"], box=tuple(float(v) for v in meta["box"]),
        confidence=float("nan") if meta["confidence"] is None else float(meta["confidence"]),
        image_size=tuple(meta["image_size"]), index=int(meta["index"]),
        identity=arrays[f"{key}.identity"] if meta["identity"] else None, extras=dict(meta["extras"]),
    )  # fmt: skip


_HAIR_MESH = ("verts", "faces", "uvs", "presence")
_HAIR_STORED = ("hair.texture.rgba", "hair.scalp_tile")  # arrays written uncompressed (`Person.save`)
_HAIR_GRID = ("centre", "polar", "azimuth", "scalp", "radius", "presence", "thickness", "measured")


def _hair_to_json(hair: Hair, textures: HeadTextures, arrays: dict[str, np.ndarray]) -> dict:
    """Scalars of `hair` as JSON; its arrays go into `arrays` under ``hair.<name>``. Of each painted scalp
    tile only the texels that differ from the person's own tile (`textures`) are kept, with a bit mask of
    where they are: a third of the tile's bytes, written in a third of the time."""
    mesh, grid, texture = hair.mesh, hair.mesh.grid, hair.texture
    arrays.update({f"hair.mesh.{name}": getattr(mesh, name) for name in _HAIR_MESH})
    arrays.update({f"hair.grid.{name}": getattr(grid, name) for name in _HAIR_GRID})
    arrays["hair.texture.rgba"] = _byte_planes(texture.rgba)
    for tile, image in hair.scalp_tiles.items():
        differs = image != textures.tiles[tile]
        changed = differs[..., 0] | differs[..., 1] | differs[..., 2]  # (.any(-1) over 3 values is 5x slower)
        arrays[f"hair.scalp_tile{tile}.changed"] = np.packbits(changed)
        arrays[f"hair.scalp_tile{tile}.texels"] = _byte_planes(image[changed])
    return {"drop_polar": grid.drop_polar, "texture_shape": list(texture.rgba.shape), "texture_seen": texture.seen,
            "scalp_tiles": sorted(hair.scalp_tiles), "mask": hair.mask_summary, "timings": hair.timings}  # fmt: skip


def _hair_from_json(meta: dict, textures: HeadTextures, arrays: dict[str, np.ndarray]) -> Hair:
    """The inverse of `_hair_to_json` (`textures`: the person's own tiles, which the scalp tiles change)."""
    from sie3d.hair.geometry import HairGrid, HairMesh
    from sie3d.hair.texture import HairTexture
    from sie3d.hair.volume import Hair

    grid = HairGrid(**{name: arrays[f"hair.grid.{name}"] for name in _HAIR_GRID}, drop_polar=float(meta["drop_polar"]))
    mesh = HairMesh(**{name: arrays[f"hair.mesh.{name}"] for name in _HAIR_MESH}, grid=grid)
    # (Folders saved before December 3 also hold "hair.texture.dark", a tone no longer used.)
    texture = HairTexture(_from_byte_planes(arrays["hair.texture.rgba"], meta["texture_shape"]),
                          float(meta["texture_seen"]))  # fmt: skip
    tiles = {}
    for tile in meta["scalp_tiles"]:
        image = textures.tiles[tile].copy()
        bits = np.unpackbits(arrays[f"hair.scalp_tile{tile}.changed"], count=image.shape[0] * image.shape[1])
        changed = bits.reshape(image.shape[:2]).astype(bool)
        texels = arrays[f"hair.scalp_tile{tile}.texels"]
        image[changed] = _from_byte_planes(texels, (int(changed.sum()), image.shape[2]))
        tiles[tile] = image
    return Hair(mesh, texture, tiles, dict(meta["mask"]), dict(meta["timings"]))


def _byte_planes(image: np.ndarray) -> np.ndarray:
    """A float32 array as (4, N) uint8: its values' bytes, the first of every value, then the second ...
    The exponent bytes line up, so zlib compresses this 25% smaller and 40% faster than the floats."""
    return np.ascontiguousarray(np.asarray(image, "<f4").reshape(-1).view(np.uint8).reshape(-1, 4).T)


def _from_byte_planes(planes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    if planes.dtype != np.uint8 or planes.shape != (4, int(np.prod(shape))):
        raise ValueError(f"texture bytes of shape {planes.shape} do not make a float32 image of shape {shape}")
    # (one copy: the planes interleaved -- stacked, 2-4x faster than copying their transpose; the view is float32
    # already on little-endian machines)
    return np.stack(tuple(planes), -1).view("<f4").reshape(shape).astype(np.float32, copy=False)


def _write_npz(path: Path, arrays: dict[str, np.ndarray], stored: Collection[str] = ()) -> None:
    """An ``.npz`` that `np.load` reads, deflated at zlib level 1 (numpy's own compressed writer takes
    about 1.5x as long for a few percent less); the arrays named in `stored` are not compressed."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy")
            member.compress_type = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
            with archive.open(member, "w", force_zip64=True) as stream:
                np.lib.format.write_array(stream, np.asarray(array), allow_pickle=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- reconstruction ----------------------------------------------------------------------------------


Progress = Callable[[str], None]  # told the name of each stage as it starts


def _no_progress(stage: str) -> None:
    pass


def reconstruct(photo: Photo, models: Models, config: ReconstructConfig = ReconstructConfig(),
                progress: Progress = _no_progress) -> Person:  # fmt: skip
    """Observe the face, fit the head and take the textures from the photo (`progress` is told "observe",
    "fit" and "texture" as each stage starts)."""
    from sie3d.face import observe_photo
    from sie3d.head.texture import build_textures

    start = time.perf_counter()
    models.preload("observer", "embedder", "head", "fitter", "hands")  # loaded on first use; timed apart
    timings = {"load_models": time.perf_counter() - start}
    progress("observe")
    start = time.perf_counter()
    chosen, faces = observe_photo(photo, models.observer, models.embedder, face=config.face)
    timings["observe"] = time.perf_counter() - start
    progress("fit")
    start = time.perf_counter()
    fit = models.fitter.fit(chosen)
    timings["fit"] = time.perf_counter() - start
    progress("texture")
    start = time.perf_counter()
    hands = np.asarray([hand.landmarks for hand in models.hands(photo.rgb)], np.float32).reshape(-1, 21, 2)
    covered, hand_cover = hands_over_face(hands, chosen, photo.rgb.shape[:2])
    textures = build_textures(photo.rgb, chosen, fit, models.head, size=config.texture_size, config=config.texture,
                              occluded=covered)  # fmt: skip
    timings["texture"] = time.perf_counter() - start
    person = Person(photo, chosen, tuple(faces), fit, textures, input_warnings(chosen, fit, hand_cover), timings,
                    config, hands=hands)  # fmt: skip
    if config.hair.enabled:
        progress("hair")
        person = with_hair(person, models, config.hair)
    return person


def with_hair(person: Person, models: Models, config: HairConfig | None = None) -> Person:
    """`person` with its hair volume made from its photo (`sie3d.hair`; None for a bald head), under `config`
    (default: the person's own hair settings, switched on); timed as the stage "hair"."""
    from sie3d.hair.geometry import face_landmarks_under_every_expression
    from sie3d.hair.volume import build_hair

    config = dataclasses.replace(config or person.config.hair, enabled=True)
    start = time.perf_counter()
    landmarks = face_landmarks_under_every_expression(models.fitter, person.fit)
    others = [face for face in person.faces if face.index != person.observation.index]
    hair, _ = build_hair(person.photo.rgb, person.observation, person.fit, person.textures, models.head, landmarks,
                         models.segmenter, config, others)  # fmt: skip
    timings = {**person.timings, "hair": time.perf_counter() - start}
    return dataclasses.replace(person, hair=hair, hair_made=True, timings=timings,
                               config=dataclasses.replace(person.config, hair=config))  # fmt: skip


def with_hair_as_asked(person: Person, models: Models, asked: bool | HairConfig | None = None,
                       progress: Progress = _no_progress) -> Person:  # fmt: skip
    """`person` (a loaded one, typically) with its hair volume as `asked`: False or a disabled `HairConfig`
    takes it off (hair settings switched off); True (the person's own settings, today's if it was made without)
    or an enabled `HairConfig` asks for it; None keeps the person's own settings. Hair is made (`progress` told
    "hair") only where it is wanted and the hair stage never ran: a bald head's None stays None, a folder of
    format 1 (which kept no hair) gets its hair."""
    if asked is False or (isinstance(asked, HairConfig) and not asked.enabled):
        if not person.hair_made and not person.config.hair.enabled:
            return person
        return dataclasses.replace(person, hair=None, hair_made=False, config=dataclasses.replace(
            person.config, hair=dataclasses.replace(person.config.hair, enabled=False)))  # fmt: skip
    own = person.config.hair
    if asked is True and not own.enabled:  # hair asked of a person made without it: today's settings
        own = HairConfig()
    config = asked if isinstance(asked, HairConfig) else own
    if person.hair_made or not (asked is True or config.enabled):
        return person
    progress("hair")
    return with_hair(person, models, config)


def retextured(person: Person, models: Models, texture: TextureConfig) -> Person:
    """`person` with its textures made again from its photo under another `TextureConfig` (same fit)."""
    from sie3d.head.texture import build_textures

    if texture == person.config.texture:
        return person
    render_time = {"occlusion": person.config.texture.occlusion, "shadows": person.config.texture.shadows}
    if dataclasses.replace(texture, **render_time) == person.config.texture:
        # occlusion and shadows are drawn at render time: the textures are the same
        return dataclasses.replace(person, config=dataclasses.replace(person.config, texture=texture))
    covered, _ = hands_over_face(person.hands, person.observation, person.photo.rgb.shape[:2])
    textures = build_textures(person.photo.rgb, person.observation, person.fit, models.head,
                              size=person.config.texture_size, config=texture, occluded=covered)  # fmt: skip
    hair = person.hair
    if hair is not None:  # the hair painted on the new textures' scalp, not the old ones'
        from sie3d.hair.volume import scalp_tiles

        hair = dataclasses.replace(hair, scalp_tiles=scalp_tiles(textures, models.head, person.fit, hair.mesh,
                                                                 hair.texture))  # fmt: skip
    return dataclasses.replace(person, textures=textures, hair=hair,
                               config=dataclasses.replace(person.config, texture=texture))  # fmt: skip


def hands_over_face(hands: np.ndarray, obs: FaceObservation, shape: tuple[int, int]
                    ) -> tuple[np.ndarray | None, float]:  # fmt: skip
    """The pixels of a photo of `shape` (H, W) that the hands with points `hands` (K, 21, 2) cover ((H, W) bool;
    None when there is no hand) and the share of the face oval of `obs` (`sie3d.head.fit.FACE_OVAL`) they
    cover."""
    from sie3d.face.hands import hand_mask
    from sie3d.head.texture import polygon_mask

    if len(hands) == 0:
        return None, 0.0
    covered = hand_mask(hands, shape)
    oval = polygon_mask(obs.landmarks_px[list(FACE_OVAL), :2], (shape[1], shape[0]))
    return covered, float((covered & oval).sum() / max(oval.sum(), 1))


MAX_RELIABLE_YAW = 45.0  # degrees; beyond this one side of the face is mostly unseen
MAX_RELIABLE_FIT_ERROR = 0.05  # landmark error as a fraction of the eye distance
MAX_HAND_COVER = 0.05  # share of the face oval a hand may cover before the texture is said to be guessed there
# Face height (MediaPipe's oval, forehead to chin, in the photo's pixels) below which the texture is said to be blurry:
# the face tile's 1024 texels hold the face about 600 texels tall, so a 100 px face is stretched six times.
MIN_SHARP_FACE_PX = 100


def input_warnings(obs: FaceObservation, fit: HeadFit, hand_cover: float = 0.0) -> tuple[str, ...]:
    """Known ways a result degrades, said plainly (they also go into report.json); `hand_cover`: the share of the
    face a hand covers (`hands_over_face`)."""
    warnings = []
    face_px = float(np.ptp(obs.landmarks_px[list(FACE_OVAL), 1]))
    if face_px < MIN_SHARP_FACE_PX:
        warnings.append(f"the face is only {face_px:.0f} px tall in the photo: the texture is blurry and the fit "
                        f"rough; a photo in which the face is at least {MIN_SHARP_FACE_PX} px tall gives a sharper "
                        "avatar")
    if hand_cover > MAX_HAND_COVER:
        warnings.append(f"a hand covers {100 * hand_cover:.0f}% of the face: the texture there is taken from the "
                        "other side of the face or the skin's colour, and the shape under it is guessed; use a "
                        "photo with the face uncovered for a faithful avatar")
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


# -- posing: pictures of a person with any expression -------------------------------------------------


def _coefficients(coefficients: np.ndarray) -> np.ndarray:
    values = np.asarray(coefficients, np.float32)
    if values.shape != (N_COEFFICIENTS,):
        raise ValueError(f"expected ({N_COEFFICIENTS},) ICT expression coefficients, got shape {values.shape}")
    return values


_TEXTURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # person -> (models, its TexturedHead)


def _textured(person: Person, models: Models):
    """The renderable head of `person` (built once per person and models in a process)."""
    from sie3d.head.texture import render_layout
    from sie3d.previews import TexturedHead

    cached = _TEXTURED.get(person)
    if cached is not None and cached[0] is models:
        return cached[1]
    textured = TexturedHead.build(models.head, render_layout(models.head), person.textures,
                                  mouth_light=person.config.texture.mouth == "detailed", hair=person.hair)
    if person.config.texture.occlusion:
        textured = textured.with_occlusion(person.fit.identity, person.photo_expression, person.config.texture.shadows)
    _TEXTURED[person] = (models, textured)
    return textured


def wrinkle_coefficients(person: Person, coefficients: np.ndarray) -> np.ndarray:
    """(53,) how strongly each shape's wrinkles show on `person` wearing `coefficients` (53,): what the
    expression adds to the photo's, ``max(0, coefficients - photo_expression)``. The texture is taken
    from the photo, so the photo's own folds are in it already; a smile on a smiling photo does not fold
    twice, and the photo's own expression (and the rest of a neutral photo) gets none. With gradients
    (the perceptual loss): ``models.wrinkles.detail(torch.relu(coefficients - photo_expression))``."""
    return np.maximum(_coefficients(coefficients) - person.photo_expression, 0.0).astype(np.float32)


def wrinkle_detail(person: Person, models: Models, coefficients: np.ndarray, depth: float = 1.0):
    """(1, 3, S, S) torch surface detail of the face tile for `person` wearing `coefficients` (53,)
    (`WrinkleMaps.detail` of `wrinkle_coefficients`, scaled by `depth`: the refinement's wrinkle gain), or
    None when no fold is driven."""
    import torch

    weights = wrinkle_coefficients(person, coefficients) * np.float32(depth)
    maps = models.wrinkles
    if maps.is_zero(weights):
        return None
    with torch.no_grad():
        return maps.detail(torch.from_numpy(weights))


def posed_verts(person: Person, models: Models, coefficients: np.ndarray):
    """(V, 3) torch float32: the person's head vertices wearing `coefficients` (53,), head space, cm."""
    return _textured(person, models).verts(person.fit.identity, _coefficients(coefficients))


def _sh_lighting(person: Person, light: str) -> np.ndarray | None:
    """The SH light `light` (`sie3d.lighting.LIGHTS`) renders `person` with; None: the studio light."""
    return person.textures.sh_lighting if check_light(light) == "photo" else None


def render_views(person: Person, models: Models, coefficients: np.ndarray, cameras: Cameras, *,
                 wrinkles: float = 0.0, light: str = "studio") -> np.ndarray:  # fmt: skip
    """(B, H, W, 3) uint8: the person wearing `coefficients` (53,) seen by `cameras` (head space, cm), lit as
    `light` says (`sie3d.lighting.LIGHTS`) on the preview background; with the expression's wrinkles at depth `wrinkles`
    (`wrinkle_detail`; 0 or False: none, 1 or True: as the maps make them)."""
    from sie3d.previews import to_image

    textured = _textured(person, models)
    detail = wrinkle_detail(person, models, coefficients, wrinkles) if wrinkles else None
    views = textured.render(textured.verts(person.fit.identity, _coefficients(coefficients)), cameras,
                            detail=detail, sh_coeffs=_sh_lighting(person, light)).rgb  # fmt: skip
    return np.stack([to_image(view) for view in views])


def render_preview(person: Person, models: Models, coefficients: np.ndarray, size: int = 512,
                   yaws: Sequence[float] | None = None, *, wrinkles: float = 0.0, light: str = "studio") -> np.ndarray:
    """(size, len(yaws) * size, 3) uint8: the turntable sheet (front, +30°, -30°, profile by default); with
    the expression's wrinkles at depth `wrinkles` and lit as `light` says (as in `render_views`)."""
    from sie3d.previews import PREVIEW_YAWS, preview_sheet

    detail = wrinkle_detail(person, models, coefficients, wrinkles) if wrinkles else None
    return preview_sheet(_textured(person, models), person.fit.identity, _coefficients(coefficients), size,
                         tuple(PREVIEW_YAWS if yaws is None else yaws), detail,
                         _sh_lighting(person, light))  # fmt: skip


@dataclass(frozen=True)
class PhotoWindow:
    """A window of the photo to composite into: its pixels and the fit whose camera sees exactly them
    (`HeadFit.crop` of the person's fit)."""

    rgb: np.ndarray  # (h, w, 3) uint8
    fit: HeadFit


def composite(person: Person, models: Models, coefficients: np.ndarray, window: PhotoWindow | None = None, *,
              wrinkles: float = 0.0) -> np.ndarray:  # fmt: skip
    """(H, W, 3) uint8: the person wearing `coefficients` rendered with the photo's camera and lighting and
    blended over the face with a feathered mask (hair, ears, neck and background stay real).

    Over the whole photo at its resolution by default (rendering only the face's region); into `window`
    (e.g. a downscaled crop around the face, rendered whole) when given, at the window's size. With the
    expression's wrinkles at depth `wrinkles` (as in `render_views`), lit by the photo's lighting. The photo's
    hands (`Person.hands`) stay in front of the face."""
    from sie3d.face.hands import hand_mask
    from sie3d.previews import in_photo, in_photo_face_region

    coefficients = _coefficients(coefficients)
    draw, rgb, fit = (in_photo_face_region, person.photo.rgb, person.fit) if window is None else (
        in_photo, window.rgb, window.fit)  # fmt: skip
    outline = fit.project(models.fitter.landmarks_3d(person.fit, coefficients)[list(FACE_OVAL)])
    detail = wrinkle_detail(person, models, coefficients, wrinkles) if wrinkles else None
    covered = None
    if len(person.hands):  # the hands' points in the target's pixels (a window is a scaled crop of the photo)
        scale = fit.focal_px / person.fit.focal_px
        shift = np.asarray(fit.principal_px) - np.asarray(person.fit.principal_px) * scale
        covered = hand_mask(person.hands * scale + shift.astype(np.float32), rgb.shape[:2])
    return draw(_textured(person, models), rgb, fit, person.textures, coefficients, outline, detail,
                covered=covered)  # fmt: skip


# -- outputs -----------------------------------------------------------------------------------------

_VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RESERVED_NAMES = ("person", "report.json")


@dataclass(frozen=True, eq=False)
class Variant:
    """One posed output of a person: the folder it is written to, its (53,) ICT coefficients in [0, 1]
    and what the report should say about it (`info`: JSON-safe, e.g. the text and the emotions read)."""

    name: str
    coefficients: np.ndarray
    info: dict = field(default_factory=dict)
    wrinkle_gain: float = 1.0  # depth of the expression's wrinkles where outputs show them (the refinement's)

    def __post_init__(self) -> None:
        if not _VARIANT_NAME.fullmatch(self.name) or self.name in RESERVED_NAMES:
            raise ValueError(f"variant name {self.name!r} must be a plain folder name (letters, digits, . _ -; "
                             f"at most 64) other than {', '.join(RESERVED_NAMES)}")
        values = _coefficients(self.coefficients).copy()
        if not np.isfinite(values).all() or values.min() < -1e-6 or values.max() > 1 + 1e-6:
            raise ValueError(f"variant {self.name!r}: coefficients must lie in [0, 1]")
        if not (np.isfinite(self.wrinkle_gain) and 0 <= self.wrinkle_gain <= 10):
            raise ValueError(f"variant {self.name!r}: wrinkle gain {self.wrinkle_gain} must lie in [0, 10]")
        object.__setattr__(self, "coefficients", values)


PHOTO_VARIANTS = ("expression", "neutral")


def photo_variants(person: Person, names: Sequence[str] = PHOTO_VARIANTS) -> list[Variant]:
    """The variants a photo gives by itself: ``expression`` (the photo's own) and ``neutral`` (the
    person's rest face)."""
    made = {
        "expression": lambda: Variant("expression", person.photo_expression, {"source": "the photo's expression"}),
        "neutral": lambda: Variant("neutral", person.rest_expression,
                                   {"source": "the person's rest face (fitted eye/brow shape, no emotion)"}),
    }  # fmt: skip
    unknown = [n for n in names if n not in made]
    if unknown:
        raise UsageError(f"unknown variant(s): {', '.join(unknown)}", f"choose from: {', '.join(made)}")
    return [made[n]() for n in dict.fromkeys(names)]


def person_features(person: Person) -> np.ndarray:
    """(334,) what the conditioning network knows of the person: SFace identity, ICT identity, the photo's
    expression and the rest (`sie3d.semantics.conditioning.identity_features`)."""
    from sie3d.semantics.conditioning import SFACE_DIM, identity_features

    sface = person.observation.identity if person.observation.identity is not None else np.zeros(SFACE_DIM)
    # the fit's rest, which never holds a gaze (the network learned on those); `text_variants` adds the gaze
    return identity_features(sface, person.fit.identity, person.photo_expression, person.fit.rest_expression)


def text_variants(person: Person, models: Models, texts: Sequence[str], intensity: float = 1.0,
                  refine: RefineConfig | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[Variant]:  # fmt: skip
    """One variant per text: what each sentence means for this person (`TextModel.interpret_many`); each
    variant's info holds the reading (emotions, confidence, warnings) for the report. With `refine`, each
    reading is refined by the perceptual loss (`sie3d.refine.refine`; info["refinement"] says what changed
    and every loss term before and after); `progress(step, steps)` follows it, over all texts."""
    from sie3d.semantics.interpret import variant_names

    readings: list[Interpretation] = models.text.interpret_many(list(texts), person_features(person), intensity)
    names = variant_names([r.text for r in readings])
    variants = []
    for k, (name, reading) in enumerate(zip(names, readings, strict=True)):
        info, coefficients, gain = {"text": reading.to_json()}, with_gaze(reading.coefficients, person.rest_gaze), 1.0
        if refine is not None:
            from sie3d.refine import refine as run_refinement

            def overall(step: int, steps: int, k: int = k) -> None:
                if progress is not None:
                    progress(k * steps + step, len(readings) * steps)

            refined = run_refinement(person, models, coefficients, reading.emotion_probabilities, refine, overall)
            coefficients, info["refinement"] = refined.coefficients, refined.to_json()
            gain = refined.wrinkle_gain
        variants.append(Variant(name, coefficients, info, gain))
    return variants


@dataclass(frozen=True)
class OutputConfig:
    """What `write_outputs` writes for each variant (recorded in the report)."""

    formats: tuple[str, ...] = ("glb", "obj")  # mesh formats (see `sie3d.export.EXPORTERS`); () for none
    previews: bool = True  # preview.png: the turntable sheet
    in_photo: bool = True  # in_photo.png: the avatar composited into the photo
    preview_size: int = 512  # px per preview view
    wrinkles: bool = False  # the expression's wrinkles in previews, composites and (as a normal map) the GLB
    light: str = "studio"  # how the previews are lit (`sie3d.lighting`); the in-photo composite: as the photo

    def __post_init__(self) -> None:
        from sie3d.export import EXPORTERS

        check_light(self.light)

        object.__setattr__(self, "formats", tuple(dict.fromkeys(self.formats)))
        unknown = [f for f in self.formats if f not in EXPORTERS]
        if unknown:
            raise UsageError(f"unknown format(s): {', '.join(unknown)}",
                             f"use one or more of {', '.join(EXPORTERS)}, comma-separated")  # fmt: skip
        if not 64 <= self.preview_size <= 2048:
            raise UsageError(f"preview size {self.preview_size} px is outside [64, 2048]", "use 512 (the default)")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def write_outputs(person: Person, models: Models, variants: Sequence[Variant], out: str | Path,
                  config: OutputConfig = OutputConfig(), *, save_person: bool = True,
                  report_extra: dict | None = None, saved_copy: Path | None = None,
                  progress: Progress = _no_progress) -> list[Path]:
    """Write ``out/<variant>/`` for each variant (``avatar.glb``; ``avatar.obj`` + ``.mtl`` + textures;
    ``preview.png``; ``in_photo.png`` -- as `config` asks), ``out/person/`` (`Person.save`) when
    `save_person`, and ``out/report.json``. Returns the written paths. `saved_copy`: the folder `person`
    was loaded from; it is copied as it is instead of being encoded again (about 1 s saved). `progress` is
    told "preview <variant>", "in_photo <variant>" and "export" as each starts, and "write" at the end.

    What all variants share (the person's mesh, materials and encoded textures) is prepared once. Meshes
    and files are built, encoded and written by one background thread while the images render (PNG and
    zlib encoding release the GIL) -- the meshes first, so that they overlap the renders -- and all of
    them are written when this returns (or its error is raised)."""
    from concurrent.futures import ThreadPoolExecutor

    from sie3d.export import write
    from sie3d.head.wrinkles import normal_map_image
    from sie3d.previews import save_png

    variants = list(variants)
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique, got {names}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = dict(person.timings)

    def timed(name: str, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return result

    written: list[Path] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sie3d-write") as writer:
        jobs = []

        def write_later(name: str, function, *args):
            jobs.append(writer.submit(timed, name, function, *args))
            return jobs[-1]

        if save_person:
            if saved_copy is not None:
                write_later("save_person", shutil.copytree, saved_copy, out / "person")
            else:
                write_later("save_person", person.save, out / "person")
            written += [out / "person" / name for name in (_PERSON_JSON, _PERSON_ARRAYS, _PERSON_PHOTO)]
        # The meshes go to the writer first: it builds and writes them while this thread renders the pictures.
        shared = None
        if config.formats and variants:
            progress("export")
            models.head  # noqa: B018 -- loaded here, not raced for by the writer and the renders
            shared = write_later("export_shared", _SharedMesh.build, person, models)
        exports = []
        for variant in variants:
            folder = out / variant.name
            folder.mkdir(parents=True, exist_ok=True)
            depth = config.wrinkles * variant.wrinkle_gain  # 0 when the outputs show no wrinkles
            if shared is not None:
                detail = wrinkle_detail(person, models, variant.coefficients, depth) if depth else None
                normal_map = None if detail is None else normal_map_image(detail)

                def export(coefficients=variant.coefficients, normal_map=normal_map, folder=folder):
                    return write(shared.result().posed(coefficients, normal_map), folder, config.formats)

                exports.append(write_later(f"export_{variant.name}", export))
            if config.previews:
                progress(f"preview {variant.name}")
                image = timed(f"preview_{variant.name}", render_preview, person, models, variant.coefficients,
                              config.preview_size, wrinkles=depth, light=config.light)  # fmt: skip
                write_later(f"write_{variant.name}", save_png, image, folder / "preview.png")
                written.append(folder / "preview.png")
            if config.in_photo:
                progress(f"in_photo {variant.name}")
                image = timed(f"in_photo_{variant.name}", composite, person, models, variant.coefficients,
                              wrinkles=depth)  # fmt: skip
                write_later(f"write_{variant.name}", save_png, image, folder / "in_photo.png")
                written.append(folder / "in_photo.png")
        progress("write")
        start = time.perf_counter()
        for job in jobs:
            job.result()  # raises the writer's first error
        timings["wait_for_writer"] = time.perf_counter() - start
    written += [path for job in exports for path in job.result()]
    report = build_report(person, models, variants, config, timings, saved_person=save_person)
    report.update(report_extra or {})
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return [*written, out / "report.json"]


FACE_MATERIAL = "M_Face"  # the exported material of the face tile (the one wrinkles are baked into)


@dataclass(frozen=True)
class _SharedMesh:
    """The person's exportable mesh with a zero expression: every variant is this mesh with other
    vertex positions and morph weights, so materials, UVs and the encoded textures are shared."""

    rest: object  # AvatarMesh: identity shape, weights 0
    expression_basis: np.ndarray  # (53, V, 3) float32, cm: the person's (ICT's, their lids corrected; the
    # rig's targets are in `rest`)
    inbetween: np.ndarray  # (2, J, V, 3) float32, cm: the person's in-between blink shapes (`head.eyelids`), the
    # morph targets after the visemes

    @staticmethod
    def build(person: Person, models: Models) -> _SharedMesh:
        import torch

        from sie3d.export import avatar_mesh_from_ict
        from sie3d.head.texture import EYE_SHADE, EYE_TILE, HIDDEN_MATERIALS, LASH_TILE, render_layout

        head = models.head
        # Export with sie3d's eye UVs (ICT's overlap; see `render_layout`), moved back from tile 7 into
        # [0, 1): the eye materials carry their own texture, so they need no tile of their own in glTF/OBJ.
        layout = render_layout(head)
        uvs = layout.uvs.copy()
        uvs[len(head.topology.uvs):, 0] -= EYE_TILE
        with torch.no_grad():
            identity_shape = head(identity=torch.from_numpy(person.fit.identity)[None])[0].numpy()
            basis = head.expression_deltas(person.fit.identity).numpy()  # the person's lids (`head.eyelids`)
        arrays = dataclasses.replace(head.arrays, uvs=uvs, uv_faces=layout.uv_faces.astype(np.int32),
                                     expression_basis=basis)  # fmt: skip
        textures = person.textures
        if person.hair is not None:  # the hair painted on the scalp, as the previews draw it
            textures = dataclasses.replace(textures, tiles={**textures.tiles, **person.hair.scalp_tiles})
        tiles = textures.srgb_tiles()
        eye = tiles.pop(EYE_TILE)
        eyes = {m: eye for m in ("M_ScleraLeft", "M_IrisLeft", "M_ScleraRight", "M_IrisRight")}
        # The lids' shade: the eye-occlusion shell with its RGBA texture (alphaMode BLEND), when there is one.
        shade = tiles.pop(EYE_SHADE, None)
        if shade is not None:
            eyes["M_EyeOcclusion"] = shade
        # Eyelash cards only with their alpha texture (RGBA tile 6 -> alphaMode MASK, double-sided).
        kept = {"M_EyeLashes"} if LASH_TILE in tiles else set()
        kept |= {"M_EyeOcclusion"} if shade is not None else set()
        dropped = tuple(m for m in HIDDEN_MATERIALS if m not in kept)
        rest = avatar_mesh_from_ict(arrays, verts=identity_shape, textures_per_tile=tiles,
                                    textures_per_material=eyes, drop_materials=dropped)  # fmt: skip
        rest = _with_visemes(rest, basis)
        # The in-between blink shapes as targets of their own ("eyeBlinkLeft_25" ...): a viewer that drives them
        # by the blink's tent weights (sie3d's web page does) half-closes the lids as sie3d renders them.
        from sie3d.export.mesh import with_extra_targets

        inbetween = head.lids.shapes(person.fit.identity).inbetween
        rest = with_extra_targets(rest, lid_target_names(), inbetween.reshape(-1, *inbetween.shape[2:]))
        if person.hair is not None:  # its own primitive and material (alpha-blended), rigid: zero morph deltas
            from sie3d.export.mesh import with_part
            from sie3d.hair.texture import SCALP_MATERIALS, scalp_roughness

            hair = person.hair
            # The scalp under the hair matte (its own roughness map), the skin as it was.
            rest = dataclasses.replace(rest, materials=tuple(
                dataclasses.replace(m, roughness_texture=scalp_roughness(person.textures.tiles[tile],
                                                                         hair.scalp_tiles[tile], m.roughness))
                if (tile := SCALP_MATERIALS.get(m.name)) in hair.scalp_tiles else m for m in rest.materials))
            rest = with_part(rest, hair.mesh.verts, hair.mesh.faces, hair.mesh.uvs, hair.material())
            basis = np.concatenate([basis, np.zeros((len(basis), len(hair.mesh.verts), 3), np.float32)], 1)
            inbetween = np.concatenate([inbetween, np.zeros((*inbetween.shape[:2], len(hair.mesh.verts), 3),
                                                            np.float32)], 2)  # fmt: skip
        return _SharedMesh(rest, basis, inbetween)

    def posed(self, coefficients: np.ndarray, face_normal_map: np.ndarray | None = None):
        """The AvatarMesh wearing `coefficients` (53,) ICT (its default morph weights: the same pose on the
        ARKit rig, `sie3d.export.rig.rig_weights`; the targets after the rig, the visemes, at 0); with
        `face_normal_map` ((S, S, 3) uint8, `sie3d.head.wrinkles.normal_map_image`) on the face's material:
        the expression's wrinkles baked for this pose (the morph targets do not animate them)."""
        import torch

        from sie3d.export.rig import rig_weights
        from sie3d.head.eyelids import inbetween_weights
        from sie3d.head.model import BLINKS

        weights = _coefficients(coefficients)
        tents = inbetween_weights(torch.from_numpy(weights[BLINKS].astype(np.float32))).numpy()  # (2, J)
        verts = self.rest.verts + np.tensordot(weights, self.expression_basis, axes=1)
        verts = verts + np.tensordot(tents, self.inbetween, axes=2)
        materials = self.rest.materials
        if face_normal_map is not None:
            materials = tuple(m.with_normal_texture(face_normal_map) if m.name == FACE_MATERIAL else m
                              for m in materials)  # fmt: skip
        rig = rig_weights(weights)
        morph_weights = np.zeros(len(self.rest.morph_names), np.float32)  # the visemes at 0
        morph_weights[: len(rig)] = rig
        morph_weights[[self.rest.morph_names.index(n) for n in lid_target_names()]] = tents.ravel()
        return dataclasses.replace(self.rest, verts=verts.astype(np.float32), morph_weights=morph_weights,
                                   materials=materials)  # fmt: skip


def lid_target_names() -> tuple[str, ...]:
    """The exported in-between blink targets, eye by eye (eyeBlink_L's ARKit name first) and knot by knot:
    "eyeBlinkLeft_25", "eyeBlinkLeft_50", ... A viewer drives each by its tent weight of the eye's blink
    (`sie3d.head.eyelids.inbetween_weights`); engines that know only the ARKit names leave them at 0."""
    from sie3d.head.eyelids import INBETWEENS
    from sie3d.head.model import BLINKS
    from sie3d.head.names import ICT_NAMES, MEDIAPIPE_TO_ICT

    arkit = {ict[0]: name for name, ict in MEDIAPIPE_TO_ICT.items() if len(ict) == 1}
    return tuple(f"{arkit[ICT_NAMES[k]]}_{round(w * 100)}" for k in BLINKS for w in INBETWEENS)


def _with_visemes(mesh, expression_basis: np.ndarray):
    """`mesh` (the ARKit rig's targets) with the 15 visemes appended as morph targets (`sie3d.visemes`),
    built from the (53, V, 3) ICT `expression_basis` of the same vertices."""
    from sie3d.export.mesh import with_extra_targets
    from sie3d.visemes import VISEME_NAMES, viseme_deltas

    return with_extra_targets(mesh, VISEME_NAMES, viseme_deltas(expression_basis))


def export_meshes(person: Person, models: Models, coefficients: Sequence[np.ndarray]) -> list:
    """The person's exportable `AvatarMesh` wearing each (53,) `coefficients` (also its default morph
    weights), all sharing one set of materials and encoded textures."""
    shared = _SharedMesh.build(person, models)
    return [shared.posed(c) for c in coefficients]


def expression_json(coefficients: np.ndarray) -> dict[str, float]:
    """(53,) coefficients as {ICT name: value rounded to 4 decimals}."""
    return {n: round(float(v), 4) for n, v in zip(ICT_NAMES, coefficients, strict=True)}


def build_report(person: Person, models: Models, variants: Sequence[Variant], config: OutputConfig,
                 timings: dict[str, float], saved_person: bool = True) -> dict:
    """The content of ``report.json``: the photo, faces, fit, textures, warnings, configurations, variants,
    timings, versions and asset checksums."""
    import torch

    from sie3d.assets import ict, registry

    def digest(path: Path) -> str:
        return registry.sha256_of(path)[:16] if path.is_file() else "missing"

    fit = person.fit
    return {
        "sie3d_version": __version__,
        "photo": str(person.photo.path) if person.photo.path else None,
        "photo_size": list(person.photo.original_size),
        "faces_found": len(person.faces),
        "warnings": list(person.warnings),
        "face": {k: v for k, v in person.observation.to_json().items() if k not in ("landmarks_px", "identity_sface")},
        "fit": fit.to_json(),
        "expression_photo": expression_json(fit.expression),
        "expression_neutral": expression_json(fit.rest_expression),
        "texture": {"coverage_from_photo": round(person.textures.coverage, 4),
                    "skin_albedo_linear": np.round(person.textures.skin_albedo, 4).tolist(),
                    "photo_lighting_sh": np.round(person.textures.sh_lighting, 4).tolist()},
        "hair": None if person.hair is None else person.hair.summary(),  # None: hair off, or a bald head
        "hands": {"found": len(person.hands), "face_covered": round(hands_over_face(
            person.hands, person.observation, person.photo.rgb.shape[:2])[1], 4)},  # fmt: skip
        "config": {"reconstruct": person.config.to_json(), "fit": dataclasses.asdict(models.fitter.settings),
                   "output": config.to_json()},
        "person": "person/" if saved_person else None,
        "variants": {v.name: {"coefficients": expression_json(v.coefficients), "info": v.info} for v in variants},
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "assets": {
            **{a.name: {"package": a.requirement, "sha256": [f.sha256[:16] for f in a.files][0]}
               for a in registry.manifest().values()},
            "ict": {"commit": ict.ICT_COMMIT, "content_digest": ict.ICT_CONTENT_DIGEST[:16],
                    "cache_sha256": digest(ict.cache_path())},
        },
        "photo_sha256": hashlib.sha256(person.photo.rgb.tobytes()).hexdigest()[:16],
    }  # fmt: skip
