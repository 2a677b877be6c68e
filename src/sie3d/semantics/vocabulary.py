"""The expression vocabulary (``vocabulary.toml``) as typed, validated objects.

Every ICT/ARKit shape with its FACS action units and plain words; named expressions (basic, compound
and common states) with ICT coefficients and a 7-emotion reading; part-of-face requests with sided
variants; antagonist shapes. The TOML file is the data and cites its sources; this module only reads,
expands ("mouthSmile" = both sides) and checks it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from sie3d.expressions import EMOTIONS
from sie3d.head.names import ICT_NAMES

VOCABULARY_PATH = Path(__file__).with_name("vocabulary.toml")
SIDES = ("L", "R")
N_SHAPES = len(ICT_NAMES)


@dataclass(frozen=True)
class Shape:
    name: str  # ICT name
    au: str  # FACS action unit(s)
    region: str  # brows, eyes, gaze, cheeks, nose, mouth, jaw
    words: str  # plain description


@dataclass(frozen=True)
class Concept:
    """A named expression: coefficients at intensity 1, its emotion reading and its words."""

    name: str
    kind: str  # emotion | compound | state | gaze
    aus: str
    coefficients: np.ndarray  # (53,) float32
    emotion: np.ndarray  # (7,) float32 in `EMOTIONS` order, sums to 1
    adj: tuple[str, ...]
    verb: tuple[str, ...]
    noun: tuple[str, ...]
    side: str | None = None  # the side of a one-sided concept ("L"/"R"); `sided` phrases flip it
    sided: tuple[str, ...] = ()  # phrases with a {side} slot
    combines: tuple[str, ...] = ()  # a compound's two basic emotions (concept names)
    situation: tuple[str, ...] = ()  # moments that bring it to a face ("hugging a loved one"), as "someone {…}"

    @property
    def top_emotion(self) -> str:
        return EMOTIONS[int(self.emotion.argmax())]


@dataclass(frozen=True)
class Part:
    """A request about one part of the face: the shapes it sets, the rest stays at the person's rest."""

    name: str
    values: np.ndarray  # (53,) float32 values of the set shapes (both sides)
    mask: np.ndarray  # (53,) bool: the shapes this request sets
    emotion: np.ndarray  # (7,)
    verb: tuple[str, ...]
    state: tuple[str, ...]
    sided_values: dict[str, tuple[np.ndarray, np.ndarray]]  # side -> (values, mask) when sided, else {}
    sided_verb: tuple[str, ...] = ()
    sided_state: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    shapes: dict[str, Shape]
    concepts: dict[str, Concept]
    parts: dict[str, Part]
    antagonists: tuple[tuple[int, int], ...]  # pairs of ICT indices


def expand(weights: dict[str, float]) -> dict[str, float]:
    """{"mouthSmile": 0.8, "jawOpen": 0.1} -> ICT names (a sideless name of a sided shape means both)."""
    out = {}
    for name, value in weights.items():
        if name in ICT_NAMES:
            out[name] = float(value)
        elif all(f"{name}_{s}" in ICT_NAMES for s in SIDES):
            out.update({f"{name}_{s}": float(value) for s in SIDES})
        else:
            raise ValueError(f"vocabulary: unknown shape {name!r}")
    return out


def vector(weights: dict[str, float]) -> np.ndarray:
    """{shape: value} (sideless names allowed) -> (53,) float32."""
    out = np.zeros(N_SHAPES, np.float32)
    for name, value in expand(weights).items():
        out[ICT_NAMES.index(name)] = value
    return out


def _mirror_name(name: str) -> str:
    for a, b in (("_L", "_R"), ("Left", "Right")):
        if name.endswith(a):
            return name[: -len(a)] + b
        if name.endswith(b):
            return name[: -len(b)] + a
    return name


MIRROR = np.array([ICT_NAMES.index(_mirror_name(n)) for n in ICT_NAMES])  # (53,) index of each shape's mirror


def mirror(coefficients: np.ndarray) -> np.ndarray:
    """(…, 53) coefficients of the mirrored face (the subject's left <-> right)."""
    return np.asarray(coefficients)[..., MIRROR]


def emotion_vector(weights: dict[str, float]) -> np.ndarray:
    unknown = set(weights) - set(EMOTIONS)
    if unknown:
        raise ValueError(f"vocabulary: unknown emotion(s) {sorted(unknown)}; use {EMOTIONS}")
    out = np.array([float(weights.get(e, 0.0)) for e in EMOTIONS], np.float32)
    if out.sum() <= 0:
        raise ValueError("vocabulary: an emotion reading must have a positive weight")
    return out / out.sum()


@cache
def load(path: Path = VOCABULARY_PATH) -> Vocabulary:
    """Read and check the vocabulary (cached)."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    shapes = {n: Shape(n, **v) for n, v in data["shapes"].items()}
    missing = set(ICT_NAMES) - set(shapes)
    if missing or set(shapes) - set(ICT_NAMES):
        raise ValueError(f"vocabulary: shapes must be exactly the 53 ICT names (missing {sorted(missing)})")
    concepts = {}
    for name, c in data["concepts"].items():
        concepts[name] = Concept(name, c["kind"], c["aus"], vector(c["shapes"]), emotion_vector(c["emotion"]),
                                 tuple(c["adj"]), tuple(c["verb"]), tuple(c["noun"]), c.get("side"),
                                 tuple(c.get("sided", ())), tuple(c.get("combines", ())),
                                 tuple(c.get("situation", ())))  # fmt: skip
    parts = {}
    for name, p in data["parts"].items():
        values = vector(p["set"])
        mask = np.isin(np.arange(N_SHAPES), [ICT_NAMES.index(n) for n in expand(p["set"])])
        sided = {}
        if p.get("sided"):
            for side in SIDES:
                if "sided_shapes" in p:
                    chosen = expand(p["sided_shapes"][side])
                else:
                    chosen = {n: v for n, v in expand(p["set"]).items() if not n.endswith(f"_{_other(side)}")}
                chosen.update({n: v for n, v in expand(p.get("sided_extra", {})).items() if n.endswith(f"_{side}")})
                sided[side] = (vector(chosen), np.isin(np.arange(N_SHAPES), [ICT_NAMES.index(n) for n in chosen]))
        parts[name] = Part(name, values, mask, emotion_vector(p["emotion"]), tuple(p["verb"]), tuple(p["state"]),
                           sided, tuple(p.get("sided_verb", ())), tuple(p.get("sided_state", ())))  # fmt: skip
    for concept in concepts.values():
        if set(concept.combines) - set(concepts) or len(concept.combines) not in (0, 2):
            raise ValueError(f"vocabulary: {concept.name} combines {concept.combines}: name two concepts")
    pairs = []
    for a, b in data["antagonists"]["pairs"]:
        for x, y in zip(expand({a: 1}), expand({b: 1}), strict=False):
            pairs.append((ICT_NAMES.index(x), ICT_NAMES.index(y)))
        if len(expand({a: 1})) != len(expand({b: 1})):  # a sided shape against a central one: each side
            for x in expand({a: 1}):
                for y in expand({b: 1}):
                    pairs.append((ICT_NAMES.index(x), ICT_NAMES.index(y)))
    return Vocabulary(shapes, concepts, parts, tuple(dict.fromkeys(pairs)))


def antagonist_table(pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(53, 53) bool: the antagonist `pairs` (`Vocabulary.antagonists`) both ways (a raised brow, a lowered one)."""
    table = np.zeros((N_SHAPES, N_SHAPES), bool)
    for a, b in pairs:
        table[a, b] = table[b, a] = True
    return table


# Phrases that ask for one side of the face, whatever the vocabulary says: a side of the face (not "left out" or
# "all right"), one of a paired part, a move to one side, a paired part in the singular ("a raised eyebrow", "a
# tear on her cheek"; not "brow", which is mostly both: "a furrowed brow").
SIDE_PHRASES = re.compile(
    r"\b(?<!all )(left|right)(?![- ](out|alone|behind|speechless|now|away|before|after|there|here|then|on)\b)"
    r"|\b(left|right)(wards?|-sided)\b|\bone[- ](side|sided|eye|eyebrow|corner|cheek|nostril|lid|eyelid)\b"
    r"|\bto (the|one) side\b|\b(eye|eyebrow|eyelid|cheek|nostril)\b(?!-)"
    r"|\b(shift|slid|slide|swing|swung|twist)\w*\b[^.,;]*\b(jaw|mouth|lips|chin)\b|\b(jaw|mouth|lips|chin)\b[^.,;]*\b(over|aside)\b"
    r"|\b(sideways|lopsided|crooked|uneven|asymmetric(al)?|unilateral|cocked|askew|off-cent(re|er))\b")  # fmt: skip
_ENDINGS = ("s", "d", "ed", "ing")  # "smirks", "winked", "shifting": a cue's forms
# Words of one-sided phrases that say nothing of a side by themselves ("no doubt", "a long shift", "over the moon"):
# they stay out of the cues (the sideways moves are `SIDE_PHRASES`' instead).
_NOT_CUES = frozenset({"understand", "head", "upper", "over", "side", "shift", "shifted", "slide", "slid", "swing",
                       "twist", "twisted", "doubt", "knowing", "self", "satisfied", "superior"})  # fmt: skip


def words(text: str) -> list[str]:
    """The lower-case words of `text` and the parts of its hyphenated words ("self-satisfied", "self",
    "satisfied")."""
    found = re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())
    return found + [part for word in found if "-" in word for part in word.split("-")]


def _stems(word: str) -> set[str]:
    """`word` and what it is with one of `_ENDINGS` dropped ("winked": "winke", "wink")."""
    return {word} | {word[: -len(e)] for e in _ENDINGS if word.endswith(e) and len(word) - len(e) > 2}


@cache
def one_sided_words() -> frozenset[str]:
    """Words that ask for an asymmetric face: those of the one-sided concepts' phrases (a smirk, a wink, skepticism,
    confusion, a sneer, contempt) and of the parts that move to one side (the jaw or the mouth sideways) that no
    phrase or situation of a two-sided concept or part uses in any form ("snarl": "snarling with disgust")."""
    vocabulary = load()
    one, two = set(), set()
    for concept in vocabulary.concepts.values():
        (one if concept.side else two).update(w for phrase in concept.adj + concept.verb + concept.noun
                                              for w in words(phrase))  # fmt: skip
        two.update(w for phrase in concept.situation for w in words(phrase))
    for part in vocabulary.parts.values():
        (two if np.allclose(part.values, mirror(part.values)) else one).update(w for phrase in part.verb + part.state
                                                                               for w in words(phrase))  # fmt: skip
    two_stems = {stem for w in two for stem in _stems(w)}
    return frozenset(w for w in one - _NOT_CUES if len(w) > 2 and not _stems(w) & two_stems)


def asks_for_a_side(text: str) -> bool:
    """Whether `text` names a side, one of a paired part or a paired part in the singular (`SIDE_PHRASES`), or a
    one-sided expression or move in any form of its words (`one_sided_words`)."""
    if SIDE_PHRASES.search(text.lower()):
        return True
    cues = one_sided_words()
    return any(_stems(w) & cues for w in words(text))


def _other(side: str) -> str:
    return "R" if side == "L" else "L"
