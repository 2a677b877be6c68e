"""Perceptual refinement: adjust an expression until frozen perception networks read it as intended.

The paper's second idea (SIE3D, "perceptual expression loss"): render the avatar, let frozen, pre-trained
networks look at the renders, and move the expression so that they read what the text asked for, while
the person stays recognisable. Done naively -- 53 free coefficients against one classifier -- this
overfits the classifier: it learns to fool it with grimaces (EVALUATION.md). So here:

- **A plausible space.** The optimised parameters are a few symmetric action-unit changes (`RefineConfig
  .units`: each moves the left and right shape of one FACS unit together, and only units that carry
  emotion: brows, lids, cheeks, nose, lips, jaw -- no gaze, no sideways jaw), added to the target
  coefficients and clamped to [0, 1]; a unit the target moves asymmetrically (a wink, a smirk) is split into
  its two sides (`refinement_units`). With wrinkles on, one gain on the wrinkle depth is optimised too.
  Never pixels, never 53 free values.
- **Several readers, several views.** Each step renders the head from `RefineConfig.yaws` with a little
  jitter (yaw, pitch, light, background, the crop's position and size) and reads the renders with
  mini-Xception (`sie3d.perception.mini_xception`: emotion distribution vs the text's), MediaPipe's
  landmark -> blendshape chain (`sie3d.perception.face_mesh`: against what it reads on the target's own
  render, a blendshape the target does not move from the rest may not move, one it moves may not move
  back -- a geometry reading that penalises a shut eye or a lopsided mouth nobody asked for) and SFace
  (`sie3d.face.sface`: no loss of similarity to the photo compared with the rest render).
- **A prior** keeps the change near the target; the best point on the nominal views (checked every few
  steps, the target itself included) is kept.

Everything is deterministic for a seed. The held-out judges (`sie3d.eval.judges`: facex, FaceNet) are
never imported here: what the refinement optimises is not what the evaluation reports.

    refinement = refine(person, models, target_coefficients, target_emotions)   # -> Refinement
    refinement.coefficients                                                     # (53,) the refined pose
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from sie3d.expressions import EMOTIONS
from sie3d.head.names import ICT_NAMES, MEDIAPIPE_NAMES, mediapipe_from_ict

if TYPE_CHECKING:
    from sie3d.avatar import Models, Person

# The units the refinement may move: ICT shape names without their side (both sides move together), each a
# FACS action unit that carries emotion (see semantics/vocabulary.toml for the AU of each shape).
EMOTION_UNITS: tuple[str, ...] = (
    "browInnerUp", "browOuterUp", "browDown",            # AU1, AU2, AU4
    "eyeWide", "cheekSquint", "eyeSquint", "eyeBlink",   # AU5, AU6, AU7, AU43
    "noseSneer", "mouthUpperUp", "mouthSmile",           # AU9, AU10, AU12
    "mouthDimple", "mouthFrown", "mouthLowerDown",       # AU14, AU15, AU16
    "mouthShrugLower", "mouthStretch", "mouthPress",     # AU17, AU20, AU24
    "jawOpen",                                           # AU26
)  # fmt: skip
# MediaPipe blendshapes the geometry term compares: all but gaze and the "_neutral" score.
_MP_COMPARED = np.array([not (n.startswith("eyeLook") or n == "_neutral") for n in MEDIAPIPE_NAMES])
TERMS = ("emotion", "blendshapes", "identity", "prior")
ASYMMETRY = 0.15  # a unit whose sides differ by more than this in the target is refined per side
ASKED = 0.1  # a MediaPipe blendshape the target moves by at least this much from the rest is "asked for"


@dataclass(frozen=True)
class RefineConfig:
    """How the refinement runs (recorded in the report)."""

    steps: int = 24  # at most this many optimiser steps
    min_steps: int = 12  # never stop before this many
    checkpoint_every: int = 6  # steps between evaluations on the nominal views (the best one is kept)
    learning_rate: float = 0.04  # Adam, on the unit changes
    units: tuple[str, ...] = EMOTION_UNITS
    max_change: float = 0.4  # a unit moves at most this far from the target
    yaws: tuple[float, ...] = (0.0, 25.0, -25.0)  # degrees; views rendered each step
    size: int = 224  # px, square renders
    emotion_weight: float = 1.0  # KL(text's emotions || mini-Xception's), mean over views
    blendshape_weight: float = 1.0  # squared blendshape moves the text did not ask for, summed (see `refine`)
    identity_weight: float = 2.0  # SFace similarity lost against the rest render
    prior_weight: float = 0.5  # squared unit changes, summed
    wrinkles: bool = False  # render the expression's wrinkles, and optimise their gain
    jitter_yaw: float = 3.0  # degrees, uniform +-
    jitter_pitch: float = 2.0  # degrees, uniform +-
    jitter_crop: float = 0.02  # the readers' crops move and scale by up to this fraction of the face
    jitter_light: float = 0.1  # the key light's direction moves by up to this much (unit vector)
    backgrounds: tuple[float, float] = (0.6, 0.9)  # linear grey level of the background, uniform
    patience: int = 5  # stop after this many steps without an improvement of the smoothed loss
    smoothing: float = 0.7  # the jittered loss is smoothed exponentially (weight of the past) for stopping
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [u for u in self.units if u not in _unit_shapes()]
        if unknown:
            raise ValueError(f"unknown refinement unit(s): {', '.join(unknown)}")
        if self.steps < 0 or not self.yaws or self.size < 128:
            raise ValueError("RefineConfig needs steps >= 0, at least one yaw and renders of at least 128 px")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Refinement:
    """What the refinement found: the refined (53,) coefficients, the change of each unit, the wrinkle
    gain, every loss term and each nominal view's readings before (at the target) and after."""

    coefficients: np.ndarray
    unit_changes: dict[str, float]
    wrinkle_gain: float
    before: dict[str, float]
    after: dict[str, float]
    views_before: list[dict]
    views_after: list[dict]
    steps: int  # optimiser steps run
    chosen_step: int  # the step whose parameters were kept (0: the target itself read best)
    seconds: float
    config: RefineConfig = field(repr=False, default_factory=RefineConfig)

    def to_json(self) -> dict:
        return {
            "unit_changes": {k: round(v, 4) for k, v in self.unit_changes.items() if abs(v) >= 5e-4},
            "wrinkle_gain": round(self.wrinkle_gain, 4),
            "loss_before": {k: round(v, 5) for k, v in self.before.items()},
            "loss_after": {k: round(v, 5) for k, v in self.after.items()},
            "views_before": self.views_before,
            "views_after": self.views_after,
            "steps": self.steps,
            "chosen_step": self.chosen_step,
            "seconds": round(self.seconds, 2),
            "config": self.config.to_json(),
        }


@dataclass(frozen=True)
class Perception:
    """The frozen networks the refinement looks through (all PyTorch, weights from the asset registry)."""

    expression: torch.nn.Module  # sie3d.perception.mini_xception.ExpressionReader
    face_mesh: torch.nn.Module  # sie3d.perception.face_mesh.FaceMeshReader
    sface: torch.nn.Module  # sie3d.face.sface.SFace


def load_perception(sface: torch.nn.Module | None = None) -> Perception:
    """Load the perception networks (about 2 s); `sface` reuses an already loaded SFace."""
    from sie3d.face.sface import load_sface
    from sie3d.perception.face_mesh import load_face_mesh_reader
    from sie3d.perception.mini_xception import load_expression_reader

    return Perception(load_expression_reader(), load_face_mesh_reader(), sface or load_sface())


def _unit_shapes() -> dict[str, tuple[int, ...]]:
    """Unit name -> indices of its ICT shapes: a shape name without its side means both sides; a full ICT
    name (``mouthSmile_L``) one side."""
    units: dict[str, list[int]] = {}
    for i, name in enumerate(ICT_NAMES):
        units.setdefault(name.removesuffix("_L").removesuffix("_R"), []).append(i)
    return {**{k: tuple(v) for k, v in units.items()}, **{name: (i,) for i, name in enumerate(ICT_NAMES)}}


def refinement_units(target: np.ndarray, units: tuple[str, ...]) -> tuple[str, ...]:
    """`units`, each one that `target` (53,) moves asymmetrically (its sides differ by more than `ASYMMETRY`:
    a wink, a smirk, one raised brow) split into its two sides, so that the asymmetry asked for can be
    refined; the others stay symmetric."""
    shapes, out = _unit_shapes(), []
    for unit in units:
        sides = shapes[unit]
        split = len(sides) == 2 and abs(float(target[sides[0]]) - float(target[sides[1]])) > ASYMMETRY
        out.extend([ICT_NAMES[i] for i in sides] if split else [unit])
    return tuple(out)


def unit_basis(units: tuple[str, ...]) -> np.ndarray:
    """(len(units), 53): row k is 1 on the ICT shapes of unit k (both sides, or the one side a full ICT name
    gives) and 0 elsewhere."""
    shapes = _unit_shapes()
    basis = np.zeros((len(units), len(ICT_NAMES)), np.float32)
    for k, unit in enumerate(units):
        basis[k, list(shapes[unit])] = 1.0
    return basis


@dataclass(frozen=True)
class _Views:
    """One step's renders and where the face is in them."""

    images: Tensor  # (B, 3, S, S) linear RGB
    landmarks_px: Tensor  # (B, 468, 2)


class _Scene:
    """The person, renderable with gradients to the coefficients, from jittered views."""

    def __init__(self, person: Person, models: Models, config: RefineConfig) -> None:
        from sie3d.avatar import _textured

        self.person, self.models, self.config = person, models, config
        self.textured = _textured(person, models)
        self.identity = torch.from_numpy(person.fit.identity)[None]
        self.photo_expression = torch.from_numpy(person.photo_expression.astype(np.float32))

    def hold_occlusion(self, coefficients: Tensor) -> None:
        """Shade every later render with the expression occlusion of `coefficients` (53,) (the refinement
        moves the face a little from its target; measuring the occlusion at every step would cost 3 s)."""
        occlusion = self.textured.occlusion
        if occlusion is not None:
            with torch.no_grad():
                verts = self.models.head(self.identity, coefficients[None])[0]
            self.textured = replace(self.textured, occlusion=occlusion.held(verts))

    def render(self, coefficients: Tensor, wrinkle_gain: Tensor | None, rng: np.random.Generator | None
               ) -> _Views:  # fmt: skip
        from sie3d.previews import preview_cameras
        from sie3d.render import project
        from sie3d.render.renderer import STUDIO_LIGHT, DirectionalLight

        config = self.config
        verts = self.models.head(self.identity, coefficients[None])[0]
        yaws, pitch, light, grey = config.yaws, 0.0, STUDIO_LIGHT, float(np.mean(config.backgrounds))
        if rng is not None:
            yaws = tuple(y + rng.uniform(-config.jitter_yaw, config.jitter_yaw) for y in yaws)
            pitch = rng.uniform(-config.jitter_pitch, config.jitter_pitch)
            direction = np.asarray(light.direction) / np.linalg.norm(light.direction)
            direction = direction + rng.uniform(-config.jitter_light, config.jitter_light, 3)
            light = DirectionalLight(tuple(direction.tolist()), light.ambient, light.diffuse)
            grey = rng.uniform(*config.backgrounds)
        cams = preview_cameras(self.textured.head, verts.detach(), yaws, config.size, pitch)
        detail = None
        if wrinkle_gain is not None:
            detail = self.models.wrinkles.detail(torch.relu(coefficients - self.photo_expression) * wrinkle_gain)
        out = self.textured.render(verts, cams, background=(grey, grey, grey), detail=detail, light=light)
        points = self.models.fitter.landmarks_3d(self.person.fit, coefficients.detach().numpy())
        landmarks, _ = project(torch.from_numpy(points), cams)
        if rng is not None:  # the readers' crops move and scale a little
            centre = landmarks.mean(1, keepdim=True)
            extent = (landmarks.amax(1) - landmarks.amin(1)).amax(-1)[:, None, None]
            scale = torch.from_numpy(rng.uniform(1 - config.jitter_crop, 1 + config.jitter_crop,
                                                 (len(yaws), 1, 1)).astype(np.float32))  # fmt: skip
            shift = torch.from_numpy(rng.uniform(-config.jitter_crop, config.jitter_crop,
                                                 (len(yaws), 1, 2)).astype(np.float32))  # fmt: skip
            landmarks = centre + (landmarks - centre) * scale + shift * extent
        return _Views(out.rgb.permute(0, 3, 1, 2), landmarks)


class _Readers:
    """The perception networks applied to views: each returns per-view tensors (with gradients)."""

    def __init__(self, perception: Perception) -> None:
        self.perception = perception

    def emotions(self, views: _Views) -> Tensor:
        """(B, 7) mini-Xception's distribution, `EMOTIONS` order."""
        return self.perception.expression(views.images, views.landmarks_px, color="linear").emotions

    def blendshapes(self, views: _Views) -> Tensor:
        """(B, 52) MediaPipe's blendshape scores."""
        return self.perception.face_mesh(views.images, views.landmarks_px, color="linear").blendshapes

    def identity(self, views: _Views) -> Tensor:
        """(B, 128) unit SFace embeddings."""
        from sie3d.perception.crops import sface_input

        return self.perception.sface.embed(sface_input(views.images, views.landmarks_px, color="linear"))


class Objective:
    """The refinement's loss for one person and target, as a function of the parameters: the unit changes
    (len(units),) and the log of the wrinkle gain (a scalar; used only with ``config.wrinkles``)."""

    def __init__(self, person: Person, models: Models, target: np.ndarray, emotions: np.ndarray,
                 config: RefineConfig) -> None:  # fmt: skip
        target = np.asarray(target, np.float32)
        emotions = np.asarray(emotions, np.float32)
        if target.shape != (len(ICT_NAMES),) or emotions.shape != (len(EMOTIONS),) or emotions.sum() <= 0:
            raise ValueError(f"refine needs ({len(ICT_NAMES)},) coefficients and ({len(EMOTIONS)},) emotions")
        self.config = config
        self.scene, self.readers = _Scene(person, models, config), _Readers(models.perception)
        self.units = refinement_units(target, config.units)
        self.basis = torch.from_numpy(unit_basis(self.units))
        self.target = torch.from_numpy(target)
        self.want = torch.from_numpy(emotions / emotions.sum())[None]
        rest = person.rest_expression.astype(np.float32)
        self.compared = torch.from_numpy(_MP_COMPARED)
        wanted = torch.from_numpy(mediapipe_from_ict(target) - mediapipe_from_ict(rest))[self.compared]
        self.asked = wanted.abs() >= ASKED  # the blendshapes the text moves; the others should stay put
        self.direction = torch.sign(wanted)
        with torch.no_grad():  # what the nominal views read at the start: the rest face and the target
            rest_identity = self.readers.identity(self.scene.render(torch.from_numpy(rest), None, None))
            self.start_blend = self.readers.blendshapes(self.scene.render(self.target, None, None))[:, self.compared]
        self.scene.hold_occlusion(self.target)
        photo = person.observation.identity
        self.photo_identity = rest_identity.mean(0, keepdim=True) if photo is None else \
            torch.from_numpy(np.asarray(photo, np.float32))[None]  # fmt: skip
        self.rest_similarity = (rest_identity * self.photo_identity).sum(-1)

    def coefficients(self, change: Tensor) -> Tensor:
        """(53,) the target plus the unit changes, clamped to [0, 1]."""
        return torch.clamp(self.target + change @ self.basis, 0.0, 1.0)

    def gain(self, gain_log: Tensor) -> Tensor | None:
        """The wrinkle gain (in [1/e, e]), or None when wrinkles are off."""
        return torch.exp(gain_log.clamp(-1.0, 1.0)) if self.config.wrinkles else None

    def terms(self, change: Tensor, gain_log: Tensor, rng: np.random.Generator | None
              ) -> tuple[dict[str, Tensor], Tensor, Tensor]:  # fmt: skip
        """Each loss term (`TERMS`) on one set of views (jittered by `rng`; nominal without), with what
        mini-Xception read (B, 7) and each view's SFace similarity to the photo (B,)."""
        views = self.scene.render(self.coefficients(change), self.gain(gain_log), rng)
        read = self.readers.emotions(views)
        kl = (self.want * (torch.log(self.want.clamp_min(1e-6)) - torch.log(read.clamp_min(1e-6)))).sum(-1).mean()
        moved = self.readers.blendshapes(views)[:, self.compared] - self.start_blend
        against = torch.where(self.asked, torch.relu(-self.direction * moved), moved)  # unasked, or against the ask
        similarity = (self.readers.identity(views) * self.photo_identity).sum(-1)
        values = {"emotion": kl, "blendshapes": (against**2).sum(-1).mean(),
                  "identity": torch.relu(self.rest_similarity - similarity).mean(), "prior": (change**2).sum()}
        return values, read, similarity

    def total(self, values: dict[str, Tensor]) -> Tensor:
        config = self.config
        return (config.emotion_weight * values["emotion"] + config.blendshape_weight * values["blendshapes"]
                + config.identity_weight * values["identity"] + config.prior_weight * values["prior"])

    def evaluate(self, change: Tensor, gain_log: Tensor) -> tuple[dict[str, float], list[dict]]:
        """Every term and the total on the nominal views, and what each view read (for the report)."""
        with torch.no_grad():
            values, read, similarity = self.terms(change, gain_log, None)
            values["total"] = self.total(values)
        readings = [{"yaw": yaw, "emotions": {e: round(float(p), 4) for e, p in zip(EMOTIONS, row, strict=True)},
                     "sface_similarity": round(float(s), 4)}
                    for yaw, row, s in zip(self.config.yaws, read, similarity, strict=True)]  # fmt: skip
        return {k: float(v) for k, v in values.items()}, readings


class Adam:
    """Adam (Kingma & Ba, ICLR 2015) on a few tensors, the update `torch.optim.Adam` makes with its defaults
    (betas 0.9, 0.999; eps 1e-8; no weight decay). Our own because `torch.optim` imports ``torch._dynamo`` on
    first use, which costs 0.6-1.4 s of every `sie3d generate --refine` for an update of a few lines."""

    def __init__(self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:  # fmt: skip
        self.params, self.lr, self.betas, self.eps, self.steps = params, lr, betas, eps, 0
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        (b1, b2), t = self.betas, self.steps
        for p, (mean, square) in zip(self.params, self.moments, strict=True):
            if p.grad is None:
                continue
            mean.mul_(b1).add_(p.grad, alpha=1 - b1)
            square.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denominator = (square.sqrt() / math.sqrt(1 - b2**t)).add_(self.eps)
            p.addcdiv_(mean, denominator, value=-self.lr / (1 - b1**t))


def refine(person: Person, models: Models, target: np.ndarray, emotions: np.ndarray,
           config: RefineConfig = RefineConfig(), progress: Callable[[int, int], None] | None = None
           ) -> Refinement:  # fmt: skip
    """Refine the (53,) `target` coefficients for `person` so that the renders read as `emotions` (7,) (the
    text's emotion distribution, `EMOTIONS` order) and keep the person's identity; see the module's text.
    Adam on the jittered loss; every `checkpoint_every` steps the nominal loss is measured and the best
    parameters so far (the target itself included) are kept, so the result never reads worse than the
    target by the refinement's own measure. `progress(step, steps)` is called after each step."""
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    objective = Objective(person, models, target, emotions, config)
    change = torch.zeros(len(objective.units), requires_grad=True)
    gain_log = torch.zeros((), requires_grad=config.wrinkles)
    optimiser = Adam([change, gain_log] if config.wrinkles else [change], lr=config.learning_rate)

    before, views_before = objective.evaluate(change.detach(), gain_log.detach())
    chosen = (before, views_before, change.detach().clone(), gain_log.detach().clone(), 0)
    smoothed, best, since_best, steps = None, math.inf, 0, 0
    for step in range(config.steps):
        optimiser.zero_grad()
        loss = objective.total(objective.terms(change, gain_log, rng)[0])
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            change.clamp_(-config.max_change, config.max_change)
        steps = step + 1
        if progress is not None:
            progress(steps, config.steps)
        value = float(loss.detach())
        smoothed = value if smoothed is None else config.smoothing * smoothed + (1 - config.smoothing) * value
        best, since_best = (smoothed, 0) if smoothed < best else (best, since_best + 1)
        stop = steps >= config.min_steps and since_best >= config.patience
        if stop or steps % config.checkpoint_every == 0 or steps == config.steps:
            current, readings = objective.evaluate(change.detach(), gain_log.detach())
            if current["total"] < chosen[0]["total"]:
                chosen = (current, readings, change.detach().clone(), gain_log.detach().clone(), steps)
        if stop:
            break
    after, views_after, best_change, best_gain_log, best_step = chosen
    gain = objective.gain(best_gain_log)
    return Refinement(
        coefficients=objective.coefficients(best_change).numpy().astype(np.float32),
        unit_changes={u: float(c) for u, c in zip(objective.units, best_change, strict=True)},
        wrinkle_gain=1.0 if gain is None else float(gain),
        before=before, after=after, views_before=views_before, views_after=views_after,
        steps=steps, chosen_step=best_step, seconds=time.perf_counter() - start, config=config,
    )  # fmt: skip
