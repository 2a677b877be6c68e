"""Ablations by name: how the evaluated avatar's expression is made, one registered function each.

An ablation turns a reconstructed person and a target (emotion, intensity) into the (53,) ICT expression
coefficients of the avatar to render, or None for "no expression change" (the avatar keeps the
expression fitted to the photo). Later features plug in by registering a function:

    @register("wrinkles", description="the emotion's FACS prototype on the rest pose, rendered with the wrinkles and "
          "folds its shapes make (forehead lines, glabellar furrows, crow's feet, nasolabial folds ...)",
          uses_intensity=True, wrinkles=True)
def _wrinkles(person: Person, models: Models, emotion: str, intensity: float) -> np.ndarray:
    return _prototype(person, models, emotion, intensity)


@register("text", description="text conditioning only", takes_prompt=True)
    def _text(person, models, emotion, intensity, *, prompt): ...

and `sie3d eval --ablations text,prototype` compares them on the same photos, judges and crops.

Appearance features (eyes, eyelashes, mouth) are ablations too: `texture` names the `TextureConfig` the
person's textures are made with for that ablation (None: as reconstructed, sie3d's defaults), so
`sie3d eval --ablations plain,eyes,appearance` compares them on the same fits.

Flags tell the harness what a function depends on, so that it neither repeats identical renders nor
reports intensities that change nothing: `uses_emotion` (False: the same avatar for every target),
`uses_intensity` (False: evaluated once, intensity left empty), `takes_prompt` (the function is called
with the prompt text as keyword `prompt`). Appearance features are flags too: `wrinkles` renders the
avatar with its expression's wrinkles and folds (`sie3d.head.wrinkles`), `hair` with the hair volume
(`sie3d.hair`; `sie3d eval --ablations rest,hair` compares the neutral avatar without and with it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from sie3d.avatar import Models, Person
from sie3d.errors import UsageError
from sie3d.expressions import on_top_of_rest, prototype
from sie3d.head.texture import PLAIN_TEXTURES, TextureConfig

# (person, models, emotion, intensity) -> (53,) coefficients, or None for the photo's own expression
ExpressionFunction = Callable[..., np.ndarray | None]


@dataclass(frozen=True)
class Ablation:
    name: str
    function: ExpressionFunction
    description: str
    uses_emotion: bool = True
    uses_intensity: bool = False
    takes_prompt: bool = False
    wrinkles: bool = False
    texture: TextureConfig | None = None  # the textures to render with; None: the person's own
    hair: bool = False  # render with the hair volume (`sie3d.hair`), made from the photo

    def expression(self, person: Person, models: Models, emotion: str, intensity: float,
                   prompt: str | None = None) -> np.ndarray:
        """(53,) float32 coefficients of the avatar to render (None from the function = the photo's own)."""
        extra = {"prompt": prompt if prompt is not None else emotion} if self.takes_prompt else {}
        coefficients = self.function(person, models, emotion, intensity, **extra)
        if coefficients is None:
            return np.asarray(person.photo_expression, np.float32)
        coefficients = np.asarray(coefficients, np.float32)
        expected = np.shape(person.photo_expression)
        if coefficients.shape != expected:
            raise ValueError(f"ablation {self.name!r} returned shape {coefficients.shape}, expected {expected}")
        return coefficients


_REGISTRY: dict[str, Ablation] = {}


def register(name: str, *, description: str, uses_emotion: bool = True, uses_intensity: bool = False,
             takes_prompt: bool = False, wrinkles: bool = False, texture: TextureConfig | None = None,
             hair: bool = False, replace: bool = False,
             ) -> Callable[[ExpressionFunction], ExpressionFunction]:  # fmt: skip
    """Decorator: register `function` as ablation `name` (an existing name needs `replace=True`)."""
    if not name or "," in name or name != name.strip():
        raise ValueError(f"ablation names must be non-empty, without commas or surrounding spaces: {name!r}")

    def decorate(function: ExpressionFunction) -> ExpressionFunction:
        if name in _REGISTRY and not replace:
            raise ValueError(f"ablation {name!r} is already registered (pass replace=True to override it)")
        _REGISTRY[name] = Ablation(name, function, description, uses_emotion, uses_intensity, takes_prompt, wrinkles,
                                   texture, hair)  # fmt: skip
        return function

    return decorate


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> Ablation:
    if name not in _REGISTRY:
        raise UsageError(f"unknown ablation {name!r}", f"choose from: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def parse(spec: str) -> list[Ablation]:
    """'photo,rest,prototype' -> the registered ablations, in that order (duplicates dropped)."""
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    if not wanted:
        raise UsageError("--ablations is empty", f"choose from: {', '.join(_REGISTRY)}")
    return [get(name) for name in dict.fromkeys(wanted)]


# -- the built-in ablations --------------------------------------------------------------------------


@register("photo", description="the fitted avatar with the photo's own expression (no expression change)",
          uses_emotion=False)
def _photo(person: Person, models: Models, emotion: str, intensity: float) -> None:
    return None


@register("rest", description="the neutral avatar: the person's rest pose only (identity upper bound)",
          uses_emotion=False)
def _rest(person: Person, models: Models, emotion: str, intensity: float) -> np.ndarray:
    return person.rest_expression


@register("prototype", description="the emotion's FACS prototype at the given intensity on top of the rest pose",
          uses_intensity=True)
def _prototype(person: Person, models: Models, emotion: str, intensity: float) -> np.ndarray:
    return on_top_of_rest(person.rest_expression, prototype(emotion, intensity))


@register("wrinkles", description="the emotion's FACS prototype on the rest pose, rendered with the wrinkles and "
          "folds its shapes make (forehead lines, glabellar furrows, crow's feet, nasolabial folds ...)",
          uses_intensity=True, wrinkles=True)
def _wrinkles(person: Person, models: Models, emotion: str, intensity: float) -> np.ndarray:
    return _prototype(person, models, emotion, intensity)


# Appearance: the prototypes with this eye, eyelash and mouth textures, each alone on top of the
# plain textures that came before them, and all together.
_APPEARANCE = {
    "plain": ("the prototypes with the earlier textures: procedural eyes, no eyelashes, generic mouth",
              PLAIN_TEXTURES),
    "eyes": ("the prototypes with eyes from the photo (iris detail, sclera, anatomical iris)",
             TextureConfig(eyes="photo", lashes=False, mouth="generic")),
    "lashes": ("the prototypes with alpha-tested eyelash cards", TextureConfig(eyes="procedural", lashes=True,
                                                                               mouth="generic")),
    "mouth": ("the prototypes with per-tooth shading, gums, tongue and a mouth lit through the lips",
              TextureConfig(eyes="procedural", lashes=False, mouth="detailed")),
    "appearance": ("the prototypes with eyes, eyelashes and mouth all on",
                   TextureConfig(eyes="photo", lashes=True, mouth="detailed")),
}  # fmt: skip
for _name, (_description, _texture) in _APPEARANCE.items():
    register(_name, description=_description, uses_intensity=True, texture=_texture)(_prototype)
register("flat", description="the prototypes without the expression's occlusion (`sie3d.render.occlusion`): "
         "the shading of a deepened crease is not darkened", uses_intensity=True,
         texture=TextureConfig(occlusion=False))(_prototype)
register("shadows", description="the prototypes with the key light's new cast shadows (`sie3d.render.occlusion."
         "vertex_light`): a lowered brow shades the lid under it", uses_intensity=True,
         texture=TextureConfig(shadows=True))(_prototype)


@register("hair", description="the neutral avatar (rest pose) with the hair volume made from the photo "
          "(sie3d.hair: a shell over the scalp, textured from the photo)", uses_emotion=False, hair=True)
def _hair(person: Person, models: Models, emotion: str, intensity: float) -> np.ndarray:
    return person.rest_expression


@register("rest_photo_gaze", description="the neutral avatar looking where the photo looks (--gaze photo)",
          uses_emotion=False)
def _rest_photo_gaze(person: Person, models: Models, emotion: str, intensity: float) -> np.ndarray:
    return person.looking("photo").rest_expression


@register("prototype_photo_gaze", description="the prototypes on the rest pose looking where the photo looks "
          "(--gaze photo)", uses_intensity=True)
def _prototype_photo_gaze(person: Person, models: Models, emotion: str, intensity: float) -> np.ndarray:
    return _prototype(person.looking("photo"), models, emotion, intensity)


@register("text", description="the prompt read by the conditioning network for this person (sie3d generate)",
          takes_prompt=True)
def _text(person: Person, models: Models, emotion: str, intensity: float, *, prompt: str) -> np.ndarray:
    from sie3d.avatar import text_variants

    return text_variants(person, models, [prompt])[0].coefficients


@register("closed_vocabulary", description="the paper's released behaviour: the prompt snapped to the nearest of "
          "the 7 emotion words (MiniLM cosine), that emotion's prototype on the rest pose", takes_prompt=True)
def _closed_vocabulary(person: Person, models: Models, emotion: str, intensity: float, *, prompt: str) -> np.ndarray:
    from sie3d.expressions import EMOTIONS

    encoder = models.text.encoder
    nearest = EMOTIONS[int((_emotion_words(encoder) @ encoder.encode([prompt])[0]).argmax())]
    return on_top_of_rest(person.rest_expression, prototype(nearest, 1.0))


@cache
def _emotion_words(encoder) -> np.ndarray:
    """(7, 384) sentence embeddings of the seven emotion words, once per encoder."""
    from sie3d.expressions import EMOTIONS

    return encoder.encode(list(EMOTIONS))


@register("refine", description="the prompt read by the conditioning network, then refined by the perceptual loss "
          "(sie3d generate --refine: mini-Xception, MediaPipe's blendshapes and SFace on renders)", takes_prompt=True)
def _refine(person: Person, models: Models, emotion: str, intensity: float, *, prompt: str) -> np.ndarray:
    from sie3d.avatar import text_variants
    from sie3d.refine import RefineConfig

    return text_variants(person, models, [prompt], refine=RefineConfig())[0].coefficients


@register("amortized", description="the prompt read by the conditioning network fine-tuned on refined targets "
          "(python -m sie3d.semantics.amortize), without per-avatar refinement", takes_prompt=True)
def _amortized(person: Person, models: Models, emotion: str, intensity: float, *, prompt: str) -> np.ndarray:
    from sie3d.avatar import person_features

    return _amortized_model().interpret_many([prompt], person_features(person))[0].coefficients


@cache
def _amortized_model():
    """The amortised conditioning network (`sie3d.semantics.amortize`), loaded once."""
    from sie3d.semantics.amortize import AMORTIZED_WEIGHTS
    from sie3d.semantics.interpret import TextModel

    return TextModel(weights=AMORTIZED_WEIGHTS)
