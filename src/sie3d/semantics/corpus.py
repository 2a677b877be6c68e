"""A seeded generator of expression descriptions with their targets, for training and testing the
conditioning network.

Each example is a sentence plus a *recipe* that turns a person into the target coefficients:

    target = clip(keep_photo * photo_expression + keep_rest * rest_expression + add, 0, 1)

so one sentence works for every person: "happy" keeps the person's rest and adds the smile; "open
mouth" sets the jaw and leaves every other shape at rest; "smile more" starts from the photo's own
expression; "not smiling" is the rest face. The emotion reading is the concept's (blended for
compounds), or, for requests whose meaning depends on the photo, read off the target by
`emotion_reading`.

Categories: plain (the emotion words themselves), paraphrase (synonyms x templates x intensity
adverbs), situation (a moment that brings a basic emotion to the face: "someone opening a present"),
laterality, compound (blends, and modifiers such as "happy with raised eyebrows" or "smiling, left eyebrow
raised" -- the side on its part, the expression whole), negation, part (one
part of the face), relative (depends on the photo), identity (sentences that also describe the person:
"a young woman smiling faintly"), nonsense (not about a face: low confidence, rest face).

Held out: a fraction of every word list (never a concept's first, plain word) and of every template
list. Training sentences use only training words and templates; test sentences use at least one
held-out word or template, so test scores measure generalisation to unseen wording, not memory.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from sie3d.expressions import EMOTIONS, NEUTRAL_EMOTION
from sie3d.head.names import ICT_NAMES
from sie3d.semantics.vocabulary import SIDES, Concept, Part, Vocabulary, antagonist_table, load, mirror

N = len(ICT_NAMES)
CATEGORIES = ("plain", "paraphrase", "situation", "laterality", "compound", "negation", "part", "relative",
              "identity", "nonsense")  # fmt: skip
BASIC = ("anger", "disgust", "fear", "happy", "neutral", "sadness", "surprise")  # concept names of the 7

# -- wording ------------------------------------------------------------------------------------------
# Intensity adverbs and the scale they put on a concept's coefficients.
ADJ_ADVERBS = {
    "": 1.0, "slightly": 0.35, "a little": 0.45, "a bit": 0.45, "somewhat": 0.55, "mildly": 0.45, "faintly": 0.35,
    "moderately": 0.7, "fairly": 0.7, "rather": 0.75, "quite": 0.85, "very": 1.2, "really": 1.2, "so": 1.2,
    "deeply": 1.25, "truly": 1.2, "extremely": 1.45, "incredibly": 1.45, "intensely": 1.4, "utterly": 1.5,
    "totally": 1.35, "absolutely": 1.4, "visibly": 1.0, "clearly": 1.0,
}  # fmt: skip
VERB_ADVERBS = {
    "": 1.0, "faintly": 0.35, "slightly": 0.35, "a little": 0.45, "gently": 0.5, "softly": 0.5, "lightly": 0.45,
    "subtly": 0.4, "broadly": 1.25, "intensely": 1.4, "wildly": 1.45, "hard": 1.3, "a lot": 1.3,
    "uncontrollably": 1.45, "openly": 1.1,
}  # fmt: skip
NOUN_FRAMES = {  # {noun} inside; the scale it implies
    "{noun}": 1.0, "with {noun}": 1.0, "a face with {noun}": 1.0, "showing {noun}": 1.0, "{noun} on the face": 1.0,
    "wearing {noun}": 1.0, "a hint of {noun}": 0.35, "a trace of {noun}": 0.35, "a touch of {noun}": 0.4,
    "full of {noun}": 1.3, "overcome with {noun}": 1.45, "an expression of {noun}": 1.0, "displaying {noun}": 1.0,
    "a portrait with {noun}": 1.0, "the face shows {noun}": 1.0, "radiating {noun}": 1.25,
}  # fmt: skip
ADJ_FRAMES = (
    "{adj}", "looking {adj}", "a {adj} face", "a {adj} expression", "the person is {adj}", "they look {adj}",
    "make the face {adj}", "feeling {adj}", "someone who is {adj}", "with a {adj} look", "seems {adj}",
    "appearing {adj}", "portrait of a {adj} person", "make them look {adj}", "an {adj} person", "{adj} face",
    "a face that looks {adj}", "the avatar should look {adj}", "give them a {adj} expression", "acting {adj}",
    "is {adj}", "{adj} expression please", "a {adj} look on the face", "make the avatar {adj}",
)  # fmt: skip
VERB_FRAMES = (
    "{verb}", "a person {verb}", "someone {verb}", "{verb} at the camera", "caught {verb}", "a face {verb}",
    "photo of someone {verb}", "the avatar is {verb}", "shown {verb}",
    "a portrait of someone {verb}", "just {verb}", "they are {verb}", "{verb} for the camera",
)  # fmt: skip
IDENTITY = (
    "a man", "a woman", "an old man", "a young woman", "an elderly lady", "a teenage boy", "a little girl",
    "a bearded man", "a bald man", "a woman with glasses", "a middle-aged man", "my grandmother", "a soldier",
    "a doctor", "an astronaut", "a pirate", "a businessman", "a student", "a chef", "a blonde woman",
    "a red-haired man", "a man with a moustache", "the king", "an actor", "a kid", "a tall man", "a short woman",
    "an old woman with grey hair", "a young man in a suit", "a girl with freckles", "my father", "a teacher",
    "a grandfather", "a nurse", "a cowboy", "a young boy", "a guy", "a lady", "the queen", "a farmer",
)  # fmt: skip
SITUATION_FRAMES = ("{s}", "someone {s}", "a person {s}", "the face of someone {s}", "a photo of someone {s}",
                    "the look on the face of someone {s}", "like someone {s}", "a face like someone {s}",
                    "a portrait of someone {s}", "the expression of someone {s}", "imagine {s}",
                    "how a person looks {s}", "{ident} {s}", "a photo of {ident} {s}")  # fmt: skip
IDENTITY_FRAMES_ADJ = ("{ident} looking {adj}", "{ident}, {adj}", "portrait of {ident}, {adj}",
                       "{ident} who is {adj}", "{ident} who looks {adj}", "a photo of {ident} looking {adj}")
IDENTITY_FRAMES_VERB = ("{ident} {verb}", "{ident} {verb} at the camera", "portrait of {ident} {verb}",
                        "a photo of {ident} {verb}", "{ident} caught {verb}")
IDENTITY_FRAMES_NOUN = ("{ident} with {noun}", "{ident} showing {noun}", "portrait of {ident} with {noun}")
SIDE_WORDS = {"L": ("left", "their left", "his left", "her left"), "R": ("right", "their right", "his right",
                                                                         "her right")}
BLEND_FRAMES = {  # (frame, weight of A, weight of B)
    "{a} and {b}": (0.65, 0.65), "{a} but {b}": (0.65, 0.65), "{a} yet {b}": (0.65, 0.65),
    "both {a} and {b}": (0.65, 0.65), "{a} mixed with {b}": (0.7, 0.55), "half {a}, half {b}": (0.6, 0.6),
    "{a} with a hint of {b}": (1.0, 0.35), "{a} and a little {b}": (1.0, 0.35), "{a}, slightly {b}": (1.0, 0.35),
    "{a} while also {b}": (0.65, 0.65), "{a} and at the same time {b}": (0.65, 0.65),
    "{a} but also a bit {b}": (0.9, 0.4),
}  # fmt: skip
SIDED_MODIFIER_SHARE = 0.5  # of the part modifiers in compounds: one-sided ("with the left eyebrow raised")
MODIFIER_FRAMES = ("{a} with {part}", "{a}, {part}", "{a} and {part}", "{a} but with {part}",
                   "{a} with {part} too", "{a}, with {part}", "{part} and {a}")
NEGATION_ALONE = ("not {adj}", "not {verb}", "without {verb}", "no {bare}", "never {verb}", "not at all {adj}",
                  "definitely not {adj}", "anything but {adj}", "not looking {adj}", "without {noun}",
                  "a face that is not {adj}", "stop {verb}", "no longer {adj}")
NEGATION_PAIR = ("{a}, not {b}", "{a} but not {b}", "not {b} but {a}", "{a} rather than {b}", "{a} instead of {b}",
                 "{a} without being {b}", "{a}, not at all {b}", "{a} and not {b}", "not {b}, {a}",
                 "{a} though not {b}")
RELATIVE_MORE = ("{more}", "make it {more}", "the same face but {more}", "keep the expression but {more}",
                 "like in the photo but {more}", "{more} than in the photo", "make them look {more}",
                 "the photo's expression, only {more}", "same expression, {more}", "a {more} version of this face",
                 "a bit {more}", "even {more}", "{more} please", "as in the picture but {more}")
# Frames around a part request, by the phrase's grammatical form (an order vs a description).
PART_FRAMES = {
    "verb": ("{x}", "just {x}", "only {x}", "{x}, please", "please {x}", "{x} and nothing else", "simply {x}",
             "now {x}"),
    "state": ("{x}", "just {x}", "only {x}", "a face with {x}", "with {x}", "{x} and nothing else", "{x}, please",
              "a person with {x}", "simply {x}"),
}
RELATIVE_KEEP = ("keep the expression but {part}", "the same face but with {part}", "as in the photo, but {part}",
                 "keep everything else but {part}", "same expression with {part}", "keep the smile but {part}",
                 "like the photo, plus {part}", "unchanged except {part}", "the same face, {part}")
RELATIVE_SAME = ("the same face", "keep the expression", "as in the photo", "unchanged", "just like the photo",
                 "the expression from the photo", "keep the photo's expression", "don't change the expression",
                 "same as the picture", "leave the face as it is", "the original expression", "as is")
NONSENSE_WORDS = (  # none that lives in an idiom of feeling ("over the moon", "frozen with fear")
    "banana", "car", "bicycle", "table", "tax report", "spreadsheet", "mountain", "river", "airplane", "keyboard",
    "sandwich", "galaxy", "umbrella", "guitar", "volcano", "teapot", "tractor", "pillow", "submarine", "cactus",
    "lighthouse", "database", "invoice", "carpet", "penguin", "satellite", "hammer", "window", "calendar", "stapler",
)  # fmt: skip
NONSENSE_ADJ = ("purple", "wooden", "quarterly", "metallic", "green", "square", "electric", "ancient",
                "digital", "rusty", "tiny", "orange", "plastic", "enormous", "striped")
NONSENSE_FRAMES = ("{adj} {thing}", "a {adj} {thing}", "the {thing} is {adj}", "{thing} on a {thing2}",
                   "a {thing} next to the {thing2}", "compile the {thing}", "the weather is {adj} today",
                   "{thing}", "how much is a {thing}", "put the {thing} in the {thing2}", "{adj} {thing} and {thing2}",
                   "asdf {thing} qwerty", "1234 {thing}", "the {thing2} of the {thing}")
NONSENSE_EXAMPLES = ("banana",)  # the issue's own example ("purple banana"): its noun never appears in training


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 0
    heldout_fraction: float = 0.2  # of every word and template list
    train_sizes: dict[str, int] = field(default_factory=lambda: {
        "plain": 600, "paraphrase": 14000, "situation": 3000, "laterality": 9000, "compound": 9000,
        "negation": 5000, "part": 4000, "relative": 6000, "identity": 3000, "nonsense": 2500})  # fmt: skip
    test_size: int = 600  # per category (plain: all plain words)
    augment: bool = True  # False: only each list's first word and first two templates (the ablation)


@dataclass
class Example:
    text: str
    category: str
    split: str  # train | test
    keep_photo: np.ndarray  # (53,)
    keep_rest: np.ndarray  # (53,)
    add: np.ndarray  # (53,)
    emotion: np.ndarray | None  # (7,) or None: read off the target (`emotion_reading`)
    confidence: float = 1.0  # 0 for nonsense
    key: np.ndarray | None = None  # (53,) bool: the shapes the request is about (part, laterality, sided)
    negated: np.ndarray | None = None  # (53,) bool: shapes that must stay off (negation)
    expected: str = ""  # expected top emotion, when the request names one
    side: str = ""  # L / R: the side asked for (laterality, a one-sided part in a compound)


@dataclass
class Corpus:
    """All examples as arrays (row i = example i)."""

    texts: list[str]
    category: np.ndarray  # (N,) str
    split: np.ndarray  # (N,) str
    keep_photo: np.ndarray  # (N, 53) float32
    keep_rest: np.ndarray
    add: np.ndarray
    emotion: np.ndarray  # (N, 7) float32, NaN rows: read off the target
    confidence: np.ndarray  # (N,)
    key: np.ndarray  # (N, 53) bool
    negated: np.ndarray  # (N, 53) bool
    expected: np.ndarray  # (N,) str
    side: np.ndarray  # (N,) str
    config: CorpusConfig

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, mask: np.ndarray) -> Corpus:
        idx = np.flatnonzero(mask)
        return Corpus([self.texts[i] for i in idx], *(getattr(self, f)[idx] for f in ARRAY_FIELDS), self.config)

    @property
    def digest(self) -> str:
        """A hash of the corpus's text and settings (names the embedding cache)."""
        h = hashlib.sha256(json.dumps(asdict(self.config), sort_keys=True).encode())
        h.update("\n".join(self.texts).encode())
        return h.hexdigest()[:16]


ARRAY_FIELDS = ("category", "split", "keep_photo", "keep_rest", "add", "emotion", "confidence", "key", "negated",
                 "expected", "side")


def apply_recipe(keep_photo: np.ndarray, keep_rest: np.ndarray, add: np.ndarray, photo: np.ndarray,
                 rest: np.ndarray) -> np.ndarray:
    """(…, 53) target coefficients of recipes (…, 53 each) for people with `photo` and `rest` expressions."""
    return np.clip(keep_photo * photo + keep_rest * rest + add, 0.0, 1.0)


def emotion_reading(delta: np.ndarray, vocabulary: Vocabulary | None = None) -> np.ndarray:
    """(N, 53) expression change from the rest -> (N, 7) emotion reading: how much of each basic
    prototype the change contains (projection, clipped), the remainder neutral."""
    voc = vocabulary or load()
    delta = np.clip(np.asarray(delta, np.float32), 0.0, None)
    names = [e for e in EMOTIONS if e != "neutral"]
    protos = np.stack([voc.concepts[n].coefficients for n in names])  # (6, 53)
    amount = np.clip(delta @ protos.T / (protos * protos).sum(1), 0.0, 1.0)  # (N, 6)
    neutral = np.clip(1.0 - amount.max(1, keepdims=True), 0.05, 1.0)
    out = np.zeros((len(delta), len(EMOTIONS)), np.float32)
    out[:, [EMOTIONS.index(n) for n in names]] = amount
    out[:, EMOTIONS.index("neutral")] = neutral[:, 0]
    return out / out.sum(1, keepdims=True)


COMPARATIVES = {  # emotion concept -> phrases for "more of it"
    "happy": ("happier", "more cheerful", "more joyful", "smiling more", "with a bigger smile", "more smiley",
              "smile more", "more amused", "more delighted"),
    "sadness": ("sadder", "more sorrowful", "gloomier", "unhappier", "more miserable", "more downcast",
                "more glum"),
    "anger": ("angrier", "more furious", "madder", "crosser", "more annoyed", "more irritated", "more livid"),
    "surprise": ("more surprised", "more astonished", "more shocked", "more amazed", "more startled"),
    "disgust": ("more disgusted", "more grossed out", "more revolted", "more repulsed"),
    "fear": ("more scared", "more afraid", "more frightened", "more terrified", "more anxious", "more nervous"),
}
LESSER = {  # emotion concept -> phrases for "less of it"
    "happy": ("less happy", "smile less", "with a smaller smile", "less cheerful", "tone down the smile",
              "a softer smile", "less smiley"),
    "sadness": ("less sad", "less gloomy", "not as sad", "tone down the sadness", "less miserable"),
    "anger": ("less angry", "calmer", "less furious", "not as angry", "tone down the anger", "less annoyed"),
    "surprise": ("less surprised", "less shocked", "not as surprised", "tone down the surprise"),
    "disgust": ("less disgusted", "not as disgusted", "tone down the disgust", "less grossed out"),
    "fear": ("less scared", "less afraid", "calmer and less frightened", "not as scared", "tone down the fear"),
}
RELATIVE_AMOUNTS = {"": 0.5, "a bit ": 0.3, "slightly ": 0.3, "much ": 0.8, "a lot ": 0.8, "far ": 0.8}


def _article(text: str) -> str:
    """'a angry face' -> 'an angry face'; collapse doubled spaces."""
    text = re.sub(r"\b(?:the|a|an) (their|his|her) ", r"\1 ", text)
    text = re.sub(r"\ba ([aeiou])", r"an \1", text)
    text = re.sub(r"\ban ([^aeiou\s])", r"a \1", text)
    return re.sub(r"\s+", " ", text).strip(" ,")


def _simple(phrase: str) -> bool:
    """A phrase that is one idea: no 'and', 'but', commas (a negation of "sad and angry" is ambiguous)."""
    return not re.search(r"\b(and|but|yet|though)\b|,", phrase)


def _clear(emotion: np.ndarray, share: float = 0.55, margin: float = 0.15) -> bool:
    """One emotion dominates the reading: what an "expected emotion" can be checked against."""
    top = np.sort(emotion)[::-1]
    return bool(top[0] >= share and top[0] - top[1] >= margin)


def _bare(noun: str) -> str:
    """'a big smile' -> 'big smile' (for 'no {bare}')."""
    return re.sub(r"^(a|an|the) ", "", noun)


class _Recipe:
    """Builders of (keep_photo, keep_rest, add) for one example; antagonists relax with what is added."""

    def __init__(self, voc: Vocabulary) -> None:
        self.voc = voc
        self.antagonists = antagonist_table(voc.antagonists)

    def _opposed(self, active: np.ndarray) -> np.ndarray:
        """(53,) bool: shapes antagonistic to any active one."""
        return self.antagonists[active].any(0) if active.any() else np.zeros(N, bool)

    def absolute(self, coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The person's rest, with these shapes set (and their antagonists relaxed)."""
        add = np.clip(coefficients, 0, 1).astype(np.float32)
        active = add > 0
        keep_rest = (~(active | self._opposed(active))).astype(np.float32)
        return np.zeros(N, np.float32), keep_rest, add

    def with_part(self, recipe, values: np.ndarray, mask: np.ndarray):
        """`recipe` with a part's shapes set (mask) and their antagonists relaxed."""
        keep_photo, keep_rest, add = (x.copy() for x in recipe)
        off = mask | self._opposed(mask & (values > 0))
        keep_photo[off], keep_rest[off], add[off] = 0.0, 0.0, 0.0
        add[mask] = values[mask]
        return keep_photo, keep_rest, add

    def photo(self):
        return np.ones(N, np.float32), np.zeros(N, np.float32), np.zeros(N, np.float32)

    def relative(self, coefficients: np.ndarray, amount: float):
        """The photo's expression with `amount` x coefficients added (negative: taken away); adding relaxes
        the antagonists by as much."""
        add = (amount * coefficients).astype(np.float32)
        if amount > 0:
            active = coefficients > 0
            relax = self.antagonists[active].T @ coefficients[active] if active.any() else np.zeros(N)
            add = add - amount * relax.astype(np.float32) * (~active)
        return np.ones(N, np.float32), np.zeros(N, np.float32), add


def _mix(a: np.ndarray, wa: float, b: np.ndarray, wb: float) -> np.ndarray:
    return (wa * a + wb * b) / (wa + wb)


def _weighted_emotion(emotion: np.ndarray, scale: float) -> np.ndarray:
    """A concept's reading at an intensity: weaker expressions lean towards neutral, never past it."""
    w = min(1.0, 0.5 + 0.5 * scale)
    return (w * emotion + (1 - w) * NEUTRAL_EMOTION).astype(np.float32)


class Generator:
    """Builds the corpus; every random choice comes from a `random.Random` seeded by the corpus seed, the
    category and the split, so a new category or size leaves the other categories' sentences as they were."""

    def __init__(self, config: CorpusConfig = CorpusConfig(), vocabulary: Vocabulary | None = None) -> None:
        self.config = config
        self.voc = vocabulary or load()
        self.recipe = _Recipe(self.voc)
        self.rng = random.Random(config.seed)
        self._partitions: dict[str, tuple[list, list]] = {}
        self.basic = [self.voc.concepts[n] for n in BASIC]
        self.expressive = [c for c in self.voc.concepts.values() if c.kind in ("emotion", "compound", "state")]
        self.all = list(self.voc.concepts.values())
        self.sided_parts = [p for p in self.voc.parts.values() if p.sided_values]
        self.sided_concepts = [c for c in self.all if c.sided and c.side]
        self.with_situations = [c for c in self.basic if c.situation]
        self.compounds = {frozenset(c.combines): c for c in self.all if c.combines}
        # Concepts whose reading has one clear emotion (the pairs of a negation are told apart by it).
        self.clear = [c for c in self.expressive if c.name != "neutral" and _clear(c.emotion)]

    # -- held-out bookkeeping -----------------------------------------------------------------------
    def partition(self, key: str, items: Sequence, keep_first: bool = True) -> tuple[list, list]:
        """(train items, held-out items) of a list; the split depends only on the seed and the key."""
        if key not in self._partitions:
            items = list(items)
            order = list(range(1 if keep_first else 0, len(items)))
            random.Random(f"{self.config.seed}:{key}").shuffle(order)
            n_held = int(round(self.config.heldout_fraction * len(items))) if len(items) >= 3 else 0
            held = set(order[:n_held])
            train = [x for i, x in enumerate(items) if i not in held]
            if not self.config.augment:
                train = train[: 2 if key.startswith("frames") else 1]
            self._partitions[key] = (train, [x for i, x in enumerate(items) if i in held])
        return self._partitions[key]

    def draw(self, state: dict, key: str, items: Sequence, keep_first: bool = True, where=None):
        """One item; test examples draw held-out items half the time (and remember they did). `where`: only items
        it accepts, each on its own side of the list's one partition (a filtered list partitioned on its own let
        a held-out phrase into training sentences); with `where`, None when no accepted item is on the side drawn
        from."""
        train, held = self.partition(key, items, keep_first)
        if where is not None:
            train, held = [x for x in train if where(x)], [x for x in held if where(x)]
            if not train:
                return None
        if state["split"] == "test" and held and self.rng.random() < 0.5:
            state["novel"] = True
            return self.rng.choice(held)
        return self.rng.choice(train)

    # -- phrases ------------------------------------------------------------------------------------
    def phrase(self, state: dict, concept: Concept, intensity: bool = True) -> tuple[str, float, str]:
        """(a phrase naming `concept`, its intensity scale, the form used: adj|verb|noun)."""
        forms = [f for f in ("adj", "verb", "noun") if getattr(concept, f)]
        form = self.rng.choice(forms)
        word = self.draw(state, f"{concept.name}:{form}", getattr(concept, form))
        use_adverb = intensity and concept.kind != "gaze" and self.rng.random() < 0.5
        if form == "adj":
            adverb = self.draw(state, "adverbs:adj", list(ADJ_ADVERBS)) if use_adverb else ""
            return f"{adverb} {word}", ADJ_ADVERBS[adverb], form
        if form == "verb":
            adverb = self.draw(state, "adverbs:verb", list(VERB_ADVERBS)) if use_adverb else ""
            text = f"{adverb} {word}" if adverb in ("faintly", "slightly", "subtly", "openly") and \
                self.rng.random() < 0.5 else f"{word} {adverb}"  # fmt: skip
            return text, VERB_ADVERBS[adverb], form
        frame = self.draw(state, "frames:noun", list(NOUN_FRAMES)) if use_adverb else "{noun}"
        return frame.format(noun=word), NOUN_FRAMES[frame], form

    def framed(self, state: dict, concept: Concept) -> tuple[str, float]:
        text, scale, form = self.phrase(state, concept)
        if form == "adj":
            text = self.draw(state, "frames:adj", ADJ_FRAMES).format(adj=text)
        elif form == "verb":
            text = self.draw(state, "frames:verb", VERB_FRAMES).format(verb=text)
        return text, scale

    def concept_recipe(self, concept: Concept, scale: float, side: str | None = None):
        coefficients = np.clip(concept.coefficients * scale, 0, 1)
        if side and concept.side and side != concept.side:
            coefficients = mirror(coefficients)
        return self.recipe.absolute(coefficients)

    # -- categories ---------------------------------------------------------------------------------
    def plain(self, state: dict) -> Example | None:
        concept = self.rng.choice(self.basic)
        words = self.plain_words(concept)
        word = self.rng.choice(words)
        return self._example(word, "plain", state, self.concept_recipe(concept, 1.0), concept.emotion,
                             expected=concept.top_emotion)

    @staticmethod
    def plain_words(concept: Concept) -> list[str]:
        """The plain words of a basic emotion: its first adjectives and one-word nouns."""
        return list(dict.fromkeys([*concept.adj[:2], *(n for n in concept.noun if " " not in n)]))

    def paraphrase(self, state: dict) -> Example | None:
        pool = self.basic if self.rng.random() < 0.6 else self.all
        concept = self.rng.choice(pool)
        text, scale = self.framed(state, concept)
        return self._example(text, "paraphrase", state, self.concept_recipe(concept, scale),
                             _weighted_emotion(concept.emotion, scale), expected=concept.top_emotion)

    def situation(self, state: dict) -> Example | None:
        concept = self.rng.choice(self.with_situations)
        moment = self.draw(state, f"{concept.name}:situation", concept.situation, keep_first=False)
        frame = self.draw(state, "frames:situation", SITUATION_FRAMES)
        ident = self.draw(state, "identity", IDENTITY, keep_first=False) if "{ident}" in frame else ""
        return self._example(frame.format(s=moment, ident=ident), "situation", state,
                             self.concept_recipe(concept, 1.0), concept.emotion, expected=concept.top_emotion)

    def identity(self, state: dict) -> Example | None:
        concept = self.rng.choice(self.basic + self.expressive)
        ident = self.draw(state, "identity", IDENTITY, keep_first=False)
        text, scale, form = self.phrase(state, concept)
        frames = {"adj": IDENTITY_FRAMES_ADJ, "verb": IDENTITY_FRAMES_VERB, "noun": IDENTITY_FRAMES_NOUN}[form]
        frame = self.draw(state, f"frames:identity:{form}", frames)
        text = frame.format(ident=ident, adj=text, verb=text, noun=text)
        return self._example(text, "identity", state, self.concept_recipe(concept, scale),
                             _weighted_emotion(concept.emotion, scale), expected=concept.top_emotion)

    def laterality(self, state: dict) -> Example | None:
        side = self.rng.choice(SIDES)
        if self.rng.random() < 0.65:
            part = self.rng.choice(self.sided_parts)
            forms = [("verb", part.sided_verb), ("state", part.sided_state)]
            form, items = self.rng.choice([f for f in forms if f[1]])
            text = self._sided(state, self.draw(state, f"{part.name}:sided_{form}", items, keep_first=False), side)
            values, mask = part.sided_values[side]
            recipe = self.recipe.with_part(self.recipe.absolute(np.zeros(N, np.float32)), values, mask)
            emotion, expected, key = part.emotion, "", mask & (values > 0)
        else:
            concept = self.rng.choice(self.sided_concepts)
            text = self._sided(state, self.draw(state, f"{concept.name}:sided", concept.sided, keep_first=False), side)
            recipe = self.concept_recipe(concept, 1.0, side)
            emotion, expected = concept.emotion, concept.top_emotion
            coefficients = recipe[2]
            key = (coefficients - mirror(coefficients)) > 0.2  # the shapes stronger on the asked side
        if self.rng.random() < 0.3:  # a sentence around it
            text = self.draw(state, "frames:laterality", ("{x}", "a face with {x}", "{x}, please", "just {x}",
                                                           "someone with {x}", "{x} and nothing else")).format(x=text)
        return self._example(text, "laterality", state, recipe, emotion, expected=expected, key=key, side=side)

    def part(self, state: dict) -> Example | None:
        part = self.rng.choice(list(self.voc.parts.values()))
        form = self.rng.choice(("verb", "state"))
        text = self.draw(state, f"{part.name}:{form}", getattr(part, form))
        if self.rng.random() < 0.35:
            text = self.draw(state, f"frames:part_{form}", PART_FRAMES[form]).format(x=text)
        recipe = self.recipe.with_part(self.recipe.absolute(np.zeros(N, np.float32)), part.values, part.mask)
        return self._example(text, "part", state, recipe, part.emotion, key=part.mask & (part.values > 0))

    def _sided(self, state: dict, template: str, side: str) -> str:
        """`template` with its {side} slot filled: "the {side} eye" may become "her left eye"; "move {side}"
        stays plain."""
        words = SIDE_WORDS[side] if re.search(r"\b(the|a) \{side\}", template) else SIDE_WORDS[side][:1]
        return template.format(side=self.draw(state, f"side:{side}:{len(words)}", words))

    def _part_phrase(self, state: dict, sided_share: float = 0.0) -> tuple[str, Part, str]:
        """A part of the face in a state: (phrase, part, side or ""); a one-sided part ("the left eyebrow raised")
        with probability `sided_share`."""
        if sided_share and self.rng.random() < sided_share:
            part, side = self.rng.choice(self.sided_parts), self.rng.choice(SIDES)
            template = self.draw(state, f"{part.name}:sided_state", part.sided_state, keep_first=False)
            return self._sided(state, template, side), part, side
        part = self.rng.choice(list(self.voc.parts.values()))
        return self.draw(state, f"{part.name}:state", part.state), part, ""

    def compound(self, state: dict) -> Example | None:
        if self.rng.random() < 0.4:  # an expression with a part modifier: "happy with raised eyebrows"
            concept = self.rng.choice(self.expressive)
            text, scale = self.framed(state, concept)
            # A side named beside an expression stays on its part, the expression whole ("smiling, left
            # eyebrow raised": both corners up, the left brow alone).
            part_text, part, side = self._part_phrase(state, SIDED_MODIFIER_SHARE)
            values, mask = part.sided_values[side] if side else (part.values, part.mask)
            frame = self.draw(state, "frames:modifier", MODIFIER_FRAMES)
            recipe = self.recipe.with_part(self.concept_recipe(concept, scale), values, mask)
            emotion = _mix(_weighted_emotion(concept.emotion, scale), 0.75, part.emotion, 0.25)
            return self._example(frame.format(a=text, part=part_text), "compound", state, recipe, emotion,
                                 expected=concept.top_emotion, key=mask & (values > 0), side=side)
        a, b = self.rng.sample([c for c in self.expressive if c.kind != "compound"], 2)
        frame = self.draw(state, "frames:blend", list(BLEND_FRAMES))
        wa, wb = BLEND_FRAMES[frame]
        text_a, _, _ = self.phrase(state, a, intensity=False)
        text_b, _, _ = self.phrase(state, b, intensity=False)
        known = self.known_compound(a, b)
        if known is not None and abs(wa - wb) < 0.2:  # Du et al.'s compound for the pair
            recipe, emotion = self.concept_recipe(known, 1.0), known.emotion
        else:
            coefficients = np.clip(wa * a.coefficients + wb * b.coefficients, 0, 1)
            recipe, emotion = self.recipe.absolute(coefficients), _mix(a.emotion, wa, b.emotion, wb)
        expected = a.top_emotion if wa > wb + 0.2 else ""
        return self._example(frame.format(a=text_a, b=text_b), "compound", state, recipe, emotion,
                             expected=expected)

    def known_compound(self, a: Concept, b: Concept) -> Concept | None:
        """Du et al.'s compound of two basic emotions, if the vocabulary has it ("happily_surprised")."""
        return self.compounds.get(frozenset((a.name, b.name)))

    def negation(self, state: dict) -> Example | None:
        negated = self.rng.choice(self.clear)
        key_off = negated.coefficients >= 0.5 * negated.coefficients.max()
        if self.rng.random() < 0.5:
            frame = self.draw(state, "frames:negation", NEGATION_ALONE)
            slot = re.search(r"\{(\w+)\}", frame).group(1)
            form = {"adj": "adj", "verb": "verb", "noun": "noun", "bare": "noun"}[slot]
            word = self.draw(state, f"{negated.name}:{form}", getattr(negated, form), where=_simple)
            if word is None:
                return None
            text = frame.format(**{slot: _bare(word) if slot == "bare" else word})
            neutral = self.voc.concepts["neutral"]
            return self._example(text, "negation", state, self.concept_recipe(neutral, 1.0), NEUTRAL_EMOTION,
                                 expected="neutral", negated=key_off)
        wanted = self.rng.choice([c for c in self.clear if c.top_emotion != negated.top_emotion])
        frame = self.draw(state, "frames:negation_pair", NEGATION_PAIR)
        text_a = self.draw(state, f"{wanted.name}:adj", wanted.adj, where=_simple)
        text_b = self.draw(state, f"{negated.name}:adj", negated.adj, where=_simple)
        if text_a is None or text_b is None:
            return None
        key_off = key_off & (wanted.coefficients < 0.2)
        return self._example(frame.format(a=text_a, b=text_b), "negation", state,
                             self.concept_recipe(wanted, 1.0), wanted.emotion, expected=wanted.top_emotion,
                             negated=key_off)

    def relative(self, state: dict) -> Example | None:
        roll = self.rng.random()
        if roll < 0.15:
            text = self.draw(state, "frames:same", RELATIVE_SAME)
            return self._example(text, "relative", state, self.recipe.photo(), None)
        if roll < 0.45:
            part_text, part, _ = self._part_phrase(state)
            if self.rng.random() < 0.5:
                part_text = self.draw(state, f"{part.name}:verb", part.verb)
            frame = self.draw(state, "frames:keep", RELATIVE_KEEP)
            recipe = self.recipe.with_part(self.recipe.photo(), part.values, part.mask)
            return self._example(frame.format(part=part_text), "relative", state, recipe, None,
                                 key=part.mask & (part.values > 0))
        concept = self.voc.concepts[self.rng.choice(list(COMPARATIVES))]
        if self.rng.random() < 0.65:
            amount_word = self.draw(state, "relative:amount", list(RELATIVE_AMOUNTS))
            phrase = self.draw(state, f"{concept.name}:more", COMPARATIVES[concept.name])
            amount = RELATIVE_AMOUNTS[amount_word]
            more = f"{amount_word}{phrase}" if phrase.split()[0] not in ("smile", "smiling", "with") else phrase
        else:
            more = self.draw(state, f"{concept.name}:less", LESSER[concept.name])
            amount = -0.5
        frame = self.draw(state, "frames:more", RELATIVE_MORE)
        if frame in ("a bit {more}", "even {more}") and not more.startswith("more") and not more.endswith("er"):
            frame = "{more}"
        recipe = self.recipe.relative(concept.coefficients, amount)
        return self._example(frame.format(more=more), "relative", state, recipe, None)

    def nonsense(self, state: dict) -> Example | None:
        frame = self.draw(state, "frames:nonsense", NONSENSE_FRAMES)
        things = self.partition("nonsense:things", NONSENSE_WORDS, keep_first=False)
        text = frame.format(adj=self.draw(state, "nonsense:adj", NONSENSE_ADJ, keep_first=False),
                            thing=self.draw(state, "nonsense:things", NONSENSE_WORDS, keep_first=False),
                            thing2=self.rng.choice(things[0]))
        if any(example in text for example in NONSENSE_EXAMPLES) and state["split"] == "train":
            return None  # the issue's own example stays unseen
        neutral = self.voc.concepts["neutral"]
        return self._example(text, "nonsense", state, self.concept_recipe(neutral, 1.0), NEUTRAL_EMOTION,
                             confidence=0.0)

    # -- assembly -----------------------------------------------------------------------------------
    def _example(self, text: str, category: str, state: dict, recipe, emotion, *, confidence: float = 1.0,
                 expected: str = "", key=None, negated=None, side: str = "") -> Example:
        keep_photo, keep_rest, add = recipe
        if expected and emotion is not None and not _clear(np.asarray(emotion)):
            expected = ""  # a tie (a compound's 50/50 reading) has no single right answer
        return Example(_article(text), category, state["split"], keep_photo, keep_rest, add,
                       None if emotion is None else np.asarray(emotion, np.float32), confidence,
                       key, negated, expected, side)

    def examples(self, category: str, split: str, count: int) -> list[Example]:
        make: Callable[[dict], Example | None] = getattr(self, category)
        self.rng = random.Random(f"{self.config.seed}:{category}:{split}")
        out, seen, attempts = [], set(), 0
        if category == "plain" and split == "test":
            for concept in self.basic:
                for word in self.plain_words(concept):
                    state = {"split": split, "novel": True}
                    out.append(self._example(word, "plain", state, self.concept_recipe(concept, 1.0),
                                             concept.emotion, expected=concept.top_emotion))
            return out
        while len(out) < count and attempts < 30 * count:
            attempts += 1
            state = {"split": split, "novel": False}
            example = make(state)
            if example is None or (split == "test" and not state["novel"]):
                continue
            if split == "test" and (example.text in seen or example.text in self._train_texts):
                continue
            seen.add(example.text)
            out.append(example)
        return out

    def build(self) -> Corpus:
        self._train_texts: set[str] = set()
        train = []
        for category in CATEGORIES:
            items = self.examples(category, "train", self.config.train_sizes[category])
            train += items
        self._train_texts = {e.text for e in train}
        test = [e for category in CATEGORIES for e in self.examples(category, "test", self.config.test_size)]
        return to_corpus(train + test, self.config)


def to_corpus(examples: list[Example], config: CorpusConfig) -> Corpus:
    zeros = np.zeros(N, bool)
    nan = np.full(len(EMOTIONS), np.nan, np.float32)
    return Corpus(
        [e.text for e in examples], np.array([e.category for e in examples]), np.array([e.split for e in examples]),
        np.stack([e.keep_photo for e in examples]).astype(np.float32),
        np.stack([e.keep_rest for e in examples]).astype(np.float32),
        np.stack([e.add for e in examples]).astype(np.float32),
        np.stack([nan if e.emotion is None else e.emotion for e in examples]),
        np.array([e.confidence for e in examples], np.float32),
        np.stack([zeros if e.key is None else e.key for e in examples]),
        np.stack([zeros if e.negated is None else e.negated for e in examples]),
        np.array([e.expected for e in examples]), np.array([e.side for e in examples]), config,
    )  # fmt: skip


def generate(config: CorpusConfig = CorpusConfig()) -> Corpus:
    """The whole corpus (train and held-out test examples) for `config`; deterministic in its seed."""
    return Generator(config).build()
