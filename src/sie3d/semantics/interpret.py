"""Text -> expression for a person: the sentence encoder and the conditioning network behind one call.

    model = TextModel()                                  # loads MiniLM and the conditioning weights lazily
    reading = model.interpret("a gleeful grin", person_features)
    reading.coefficients   # (53,) ICT coefficients in [0, 1] for this person
    reading.emotions       # {"anger": …, …} 7-emotion distribution
    reading.confidence     # does the text describe a face? (low for "purple banana")

`person_features` come from `conditioning.identity_features` (a reconstructed person); without them the
text is read for an average person whose photo and rest are the zero expression (`sie3d explain`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from sie3d.errors import AssetError
from sie3d.expressions import EMOTIONS, NEUTRAL_EMOTION
from sie3d.head.names import ICT_NAMES
from sie3d.semantics.conditioning import IDENTITY_DIM, MAX_WORDS, N_SHAPES, ConditioningConfig, ConditioningNet, Words
from sie3d.semantics.vocabulary import MIRROR, SIDE_PHRASES, asks_for_a_side, words

FORMAT_VERSION = 1  # of the weights file written by `sie3d.semantics.train.save`
ASSET = "conditioning"  # the bundled weights, listed with their sha256 in the asset manifest
# Names of the emotions in what users read (JSON, tables): the common adjectives.
EMOTION_LABELS = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
                  "sadness": "sad", "surprise": "surprise"}  # fmt: skip
OPPOSED = {frozenset(("happy", e)) for e in ("anger", "disgust", "fear", "sadness")}
MOVED = 0.05  # a shape the text moves this far from the person's rest and photo expression is the text's (`even_sides`)
# Where a sentence may join a part of the face to an expression ("a gleeful grin with raised eyebrows"; not inside
# a hyphenated word: "salt-and-pepper").
CLAUSE_BREAK = re.compile(r"\s*([,;]|(?<!-)\b(?:with|and|but)\b(?!-))\s*", re.IGNORECASE)
# A sentence with a negation is left to the network ("smiling, not with raised eyebrows", "don't squint"), ...
NEGATION = re.compile(r"\b(?:not|no|never|without|nothing|neither|nor|instead|rather|except|anything but)\b"
                      r"|n['\u2019]t\b|\b(?:do|does|did|is|are|was|were|can|could|would|should|must|have|has|had)nt\b",
                      re.IGNORECASE)  # fmt: skip
# ... and so is one with a clause made only of these words: a "with" that names the part an expression is made with,
# not a state of it ("a frown with the brows", "a wink with her right eye.", "a smile with her eyes too").
BARE_WORDS = frozenset((
    "a", "an", "the", "her", "his", "their", "its", "my", "your", "our", "one", "both", "all", "whole", "only", "too",
    "also", "upper", "lower", "inner", "outer", "left", "right", "eye", "eyes", "eyebrow", "eyebrows", "brow",
    "brows", "eyelid", "eyelids", "lid", "lids", "mouth", "lip", "lips", "side", "sides", "jaw", "cheek", "cheeks",
    "nose", "nostril", "nostrils", "chin", "forehead", "teeth", "tooth"))  # fmt: skip
# Words that name nothing on a face by themselves: articles, pronouns, conjunctions, prepositions, auxiliaries,
# adverbs of degree, "not", "never", "please". A text made only of them ("and and and", "very", "of the") names no
# expression: the network, trained on descriptions, read "very" as disgust and "and and and" as a grimace, both with
# confidence 1.00. (Not here: the words of a direction, "up", "down", "left", "right", "over", "out", "off", which a
# gaze or a part may be asked with; "still", a face without movement; "as", of "as is", the photo's expression
# kept; amounts a photo-relative request is made of, "more", "less", "even", "so", "too", "much"; and reactions,
# "what", "no".)
FUNCTION_WORDS = frozenset((
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "each", "every", "another", "such", "which",
    "whose", "who", "whom", "i", "me", "my", "mine", "myself", "you", "your", "yours", "yourself", "he", "him", "his",
    "himself", "she", "her", "hers", "herself", "it", "its", "itself", "we", "us", "our", "ours", "ourselves", "they",
    "them", "their", "theirs", "themselves", "one", "and", "or", "but", "nor", "yet", "if", "then", "than",
    "because", "while", "though", "although", "both", "either", "neither", "whether", "of", "in", "on", "at", "to",
    "from", "by", "for", "about", "into", "onto", "under", "with", "within", "without", "through", "across", "after",
    "before", "during", "between", "among", "against", "upon", "is", "am", "are", "was", "were", "be", "been",
    "being", "do", "does", "did", "have", "has", "had", "will", "would", "shall", "should", "can", "could", "may",
    "might", "must", "very", "really", "quite", "rather", "somewhat", "slightly", "extremely", "little", "bit",
    "most", "least", "just", "only", "also", "almost", "barely", "totally", "completely", "fully", "not", "never",
    "there", "here", "please"))  # fmt: skip


def names_nothing(text: str) -> bool:
    """Whether `text` has words (`sie3d.semantics.text.WORD`, in any script) and every one is a function word
    (`FUNCTION_WORDS`)."""
    from sie3d.semantics.text import WORD

    tokens = WORD.findall(text.lower())
    return bool(tokens) and all(token in FUNCTION_WORDS for token in tokens)


# The 53 expression shapes have no tongue: a text that asks for it ("sticking out the tongue" read as a sad pucker)
# is told so; the GLB's `tongueOut` morph target (authored by sie3d, `sie3d.export.rig`) is there for viewers.
TONGUE = re.compile(r"\btongues?\b", re.IGNORECASE)


PART_SHAPES = 6  # a clause that moves at most this many shapes, by more than PART_MOVED, asks for a part
PART_MOVED = 0.1
PART_NEUTRAL = 0.2  # ... and reads at least this neutral (the vocabulary's parts: 0.3-1.0; an emotion: 0)


@dataclass(frozen=True)
class InterpretConfig:
    low_confidence: float = 0.5  # below: warned, and the face is pulled towards the rest in proportion
    blend_share: float = 0.25  # a second emotion with at least this share makes the reading a blend


@dataclass(frozen=True)
class Interpretation:
    """What a text means for one person."""

    text: str  # the text as read (cleaned, possibly truncated)
    coefficients: np.ndarray  # (53,) ICT coefficients in [0, 1]
    emotion_probabilities: np.ndarray  # (7,) `EMOTIONS` order
    confidence: float
    intensity: float
    warnings: tuple[str, ...] = ()
    blend: tuple[str, ...] = ()  # the emotions of a blend, strongest first ("happy", "sadness")

    @property
    def emotions(self) -> dict[str, float]:
        return {EMOTION_LABELS[e]: float(p) for e, p in zip(EMOTIONS, self.emotion_probabilities, strict=True)}

    @property
    def top_emotion(self) -> str:
        return EMOTION_LABELS[EMOTIONS[int(self.emotion_probabilities.argmax())]]

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "emotions": {k: round(v, 4) for k, v in self.emotions.items()},
            "top_emotion": self.top_emotion,
            "confidence": round(self.confidence, 4),
            "intensity": self.intensity,
            "blend": [EMOTION_LABELS[e] for e in self.blend],
            "blendshapes": {n: round(float(v), 4) for n, v in zip(ICT_NAMES, self.coefficients, strict=True)},
            "warnings": list(self.warnings),
        }


def load_network(path: Path | None = None) -> tuple[ConditioningNet, dict]:
    """The trained conditioning network (default: the bundled one; its size is checked against the manifest,
    `sie3d assets verify` checks its sha256) and its metadata; a clear AssetError if the file is missing,
    foreign or of another format version."""
    if path is None:
        from sie3d.assets.registry import asset_file

        path = asset_file(ASSET)
    if not path.is_file():
        raise AssetError(f"the conditioning network weights {path} are missing",
                         "reinstall sie3d, or train them: python -m sie3d.semantics.train")  # fmt: skip
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is the same user problem
        raise AssetError(f"cannot read the conditioning weights {path}: {exc}",
                         "reinstall sie3d, or train them: python -m sie3d.semantics.train") from None
    if data.get("format_version") != FORMAT_VERSION:
        raise AssetError(f"{path} has format version {data.get('format_version')}, this sie3d reads "
                         f"{FORMAT_VERSION}", "reinstall sie3d, or retrain: python -m sie3d.semantics.train")
    if list(data.get("names", [])) != list(ICT_NAMES) or list(data.get("emotions", [])) != list(EMOTIONS):
        raise AssetError(f"{path} was trained for another expression space",
                         "retrain: python -m sie3d.semantics.train")  # fmt: skip
    model = ConditioningNet(ConditioningConfig(**data["model_config"]))
    model.load_state_dict({k: v.float() for k, v in data["state"].items()})
    return model.eval(), data


class TextModel:
    """The sentence encoder and the conditioning network, each loaded on first use."""

    def __init__(self, config: InterpretConfig = InterpretConfig(), weights: Path | None = None) -> None:
        self.config = config
        self._weights = weights
        self._encoder = None
        self._network = None
        self._meta: dict = {}

    @property
    def encoder(self):
        if self._encoder is None:
            from sie3d.semantics.encoder import TextEncoder

            self._encoder = TextEncoder()
        return self._encoder

    @property
    def network(self) -> ConditioningNet:
        if self._network is None:
            self._network, self._meta = load_network(self._weights)
        return self._network

    @property
    def average_person(self) -> np.ndarray:
        """(334,) features of an average person with a zero photo and rest expression."""
        self.network  # noqa: B018 -- loads the metadata
        return np.asarray(self._meta["average_person"], np.float32)

    def interpret(self, text: str, person: np.ndarray | None = None, intensity: float = 1.0) -> Interpretation:
        return self.interpret_many([text], person, intensity)[0]

    def interpret_many(self, texts: list[str], person: np.ndarray | None = None,
                       intensity: float = 1.0) -> list[Interpretation]:
        """Read several texts for one person (`person`: (334,) identity features, None: average person).

        Each text is checked first (`sie3d.semantics.text.check_text`: empty, control characters, too long,
        not English); `intensity` in [0, 1] scales the change from the person's rest."""
        from sie3d.semantics.text import check_text

        if not 0.0 <= intensity <= 1.0:
            raise ValueError(f"intensity {intensity} is outside [0, 1]")
        if not texts:
            return []
        checks = [check_text(t, encoder_tokens=self.encoder.count_tokens) for t in texts]
        features = self.average_person if person is None else np.asarray(person, np.float32)
        if features.shape != (IDENTITY_DIM,):
            raise ValueError(f"person features must be ({IDENTITY_DIM},), got {features.shape}")
        texts = [c.text for c in checks]
        out = self._read(texts, features)
        photo, rest = features[-2 * N_SHAPES : -N_SHAPES], features[-N_SHAPES:]  # `identity_features`' order
        parts = self._part_clauses(texts, features, out)
        results = []
        for i, check in enumerate(checks):
            # A text without letters (digits, punctuation) gives the encoder nothing to read, and one of function
            # words only names nothing: whatever the network makes of them is noise, so they count as no expression.
            nothing = names_nothing(check.text)
            unread = check.language is None or nothing
            confidence = 0.0 if unread else float(out.confidence[i])
            coefficients = with_parts(out.coefficients[i].numpy(), rest, parts[i])
            warnings = list(check.warnings)
            trust = min(1.0, confidence / self.config.low_confidence)
            if TONGUE.search(check.text):
                warnings.append("the face cannot move its tongue: the 53 expression shapes have none (the GLB's "
                                "tongueOut morph target can be set in a viewer or an engine)")
            if nothing:
                warnings.append("the text names no expression, only words like 'and', 'the' or 'very': the face "
                                "stays at the person's rest; describe an expression, e.g. 'a warm smile' or "
                                "'very surprised'")  # fmt: skip
            elif trust < 1.0:
                warnings.append(f"the text does not read as a facial expression (confidence {confidence:.2f}): the "
                                "face stays close to the person's rest; describe an expression, e.g. "
                                "'a warm smile' or 'raised eyebrows'")  # fmt: skip
            coefficients = np.clip(rest + intensity * trust * (coefficients - rest), 0.0, 1.0).astype(np.float32)
            if not asks_for_a_side(check.text):
                coefficients = even_sides(coefficients, (rest, photo))
            probabilities = NEUTRAL_EMOTION.copy() if unread else out.emotions[i].numpy()
            order = np.argsort(-probabilities)
            blend = ()
            second_share = probabilities[order[1]]
            if second_share >= self.config.blend_share and "neutral" not in (EMOTIONS[order[0]], EMOTIONS[order[1]]):
                blend = (EMOTIONS[order[0]], EMOTIONS[order[1]])
                if frozenset(blend) in OPPOSED:
                    warnings.append(f"the text asks for opposite feelings ({EMOTION_LABELS[blend[0]]} and "
                                    f"{EMOTION_LABELS[blend[1]]}): the face shows a blend of both")  # fmt: skip
            results.append(Interpretation(check.text, coefficients, probabilities, confidence, intensity,
                                          tuple(warnings), blend))  # fmt: skip
        return results

    def _read(self, texts: list[str], features: np.ndarray):
        """The network's raw output for `texts` (already checked) and one person's (334,) `features` or one per
        text (N, 334)."""
        embeddings = self.encoder.encode(texts)
        ids, mask = self.encoder.word_ids(texts, MAX_WORDS)
        people = np.broadcast_to(features, (len(texts), IDENTITY_DIM)).astype(np.float32)
        with torch.no_grad():
            return self.network(torch.from_numpy(embeddings), torch.from_numpy(people),
                                Words(ids, mask, self.encoder.word_table))  # fmt: skip

    def _part_clauses(self, texts: list[str], features: np.ndarray, whole) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """`part_clauses` read by this model for one person's (334,) `features`."""
        people = np.broadcast_to(features, (len(texts), IDENTITY_DIM))
        return part_clauses(self._read, texts, people, whole, self.config.low_confidence)


def part_clauses(read, texts: list[str], features: np.ndarray, whole, low_confidence: float
                 ) -> list[list[tuple[np.ndarray, np.ndarray]]]:  # fmt: skip
    """Per text, the part requests of its clauses (`part_request`), in order, and beside them the clauses read as
    an expression (`expression_beside`). `read(texts, features)`: the
    network's output for texts and people (N, 334); `features` (N, 334) the person of each text; `whole`: the
    network's output for the texts themselves.

    The network reads "raised eyebrows" alone well (the held-out part requests: 0.90) but joined to an expression
    it lets the expression win ("a gleeful grin with raised eyebrows": brows 0.29 instead of 0.86; the held-out
    "expression with a part" requests had the part's shapes within 0.15 on 0.47). So the clauses of a sentence
    (`clauses`: split at commas, semicolons, "with", "and", "but") are also read alone, and those the network
    reads as a part request are applied to the sentence's reading (`with_parts`). A text the network reads as a
    part request as a whole ("squinting, please", "jaw down and lips apart") is its own. The other way round too:
    retrained on December 5 (twentieth session), the network let the part win ("a smile, eyebrows raised": the
    smile 0.44 against 0.85 for "a smile" alone), so beside a part, a clause read as an expression
    (`expression_beside`) raises its own shapes to what it has alone -- not those the parts move, nor their
    antagonists."""
    rest = features[:, -N_SHAPES:]
    pieces = [(i, c) for i, text in enumerate(texts) for c in clauses(text)
              if part_request(*_reading(whole, i), rest[i], low_confidence) is None]  # fmt: skip
    found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in texts]
    if not pieces:
        return found
    out = read([c for _, c in pieces], np.stack([features[i] for i, _ in pieces]))
    readings = [(i, _reading(out, k)) for k, (i, _) in enumerate(pieces)]
    others: list[list[tuple]] = [[] for _ in texts]
    for i, reading in readings:
        part = part_request(*reading, rest[i], low_confidence)
        if part is not None:
            found[i].append(part)
        else:
            others[i].append(reading)
    for i, parts in enumerate(found):
        if parts:
            parts += [e for values, keep_photo, confidence, _ in others[i]
                      if (e := expression_beside(values, keep_photo, confidence, rest[i], parts, low_confidence))]
    return found


def expression_beside(values: np.ndarray, keep_photo: float, confidence: float, rest: np.ndarray,
                      parts: list[tuple[np.ndarray, np.ndarray]], low_confidence: float
                      ) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """A clause's reading (`values` (53,), its mean `keep_photo`, its `confidence`) beside the sentence's `parts`,
    as one more entry for `with_parts`: the shapes it raises above `rest` by more than `PART_MOVED` that no part
    moves and that are no antagonist of a shape a part raises. None unless it is confident and keeps nothing of the
    photo (a relative request builds on the photo), or when it raises nothing (a neutral clause; however neutral
    its reading otherwise: a state such as "stern" reads half neutral)."""
    if confidence < low_confidence or keep_photo > 0.5:
        return None
    moved = np.zeros(len(values), bool)
    for part_moved, part_values in parts:
        moved |= part_moved | _antagonists()[part_moved & (part_values > rest)].any(0)
    raised = (values - rest > PART_MOVED) & ~moved
    return (raised, values) if raised.any() else None


def _reading(out, k: int) -> tuple[np.ndarray, float, float, float]:
    """The `k`-th reading of a network output as `part_request` takes it."""
    neutral = float(out.emotions[k, EMOTIONS.index("neutral")])
    return out.coefficients[k].numpy(), float(out.keep_photo[k].mean()), float(out.confidence[k]), neutral


def part_request(values: np.ndarray, keep_photo: float, confidence: float, neutral: float, rest: np.ndarray,
                 low_confidence: float) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """(moved (53,) bool, `values`) when the network's reading of a clause (`values` (53,), its mean `keep_photo`,
    its `confidence`, its `neutral` probability) is a part request for a person at `rest` (53,): confident,
    keeping nothing of the photo, partly neutral (`PART_NEUTRAL`), moving 1 to `PART_SHAPES` shapes by more than
    `PART_MOVED` (not counting the antagonists it relaxes), all of them shapes one part of the vocabulary sets (the
    brows, the eyes, the jaw ...). None otherwise (an expression, a situation, a photo-relative request, not a
    face)."""
    moved = np.abs(values - rest) > PART_MOVED
    raised = moved & (values > rest)
    # (antagonists it relaxes from the rest, a frowning rest's brows under "raised eyebrows", are not its own shapes)
    own = moved & ~(_antagonists()[raised].any(0) & (values < rest))
    if (confidence < low_confidence or keep_photo > 0.5 or neutral < PART_NEUTRAL
            or not 1 <= own.sum() <= PART_SHAPES or not (_part_masks()[:, own].all(1)).any()):
        return None
    return moved, values


def clauses(text: str) -> list[str]:
    """The clauses of `text` that may ask for a part of the face beside the rest of it: split at `CLAUSE_BREAK`, a
    single word before "and" kept with what follows ("raised and knitted brows"), stripped of punctuation, those
    with a letter; none when there is only one, when the text negates (`NEGATION`) or when a clause holds only
    `BARE_WORDS`; when the text names a side (`SIDE_PHRASES`), only the clauses that name it ("winking with her
    right eye" is not "winking" on the network's own side)."""
    if NEGATION.search(text):
        return []
    split = CLAUSE_BREAK.split(text)
    pieces = [split[0]]
    for separator, piece in zip(split[1::2], split[2::2], strict=True):
        if separator.lower() == "and" and len(words(pieces[-1])) == 1:
            pieces[-1] = f"{pieces[-1]} and {piece}"
        else:
            pieces.append(piece)
    pieces = [p.strip(" .!?\u2026:\"'()[]-\u2013\u2014") for p in pieces]
    pieces = [p for p in pieces if words(p)]
    if len(pieces) < 2 or any(set(words(p)) <= BARE_WORDS for p in pieces):
        return []
    if SIDE_PHRASES.search(text.lower()):
        pieces = [p for p in pieces if SIDE_PHRASES.search(p.lower())]
    return pieces


def with_parts(coefficients: np.ndarray, rest: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(53,) `coefficients` with each part request (`part_request`) applied: a shape a part raises (above `rest`)
    is at least its value, one it lowers at most; where a part raises a shape beyond the coefficients, that shape's
    antagonists go no higher than the part has them (raised brows relax a frown) -- unless another part of the
    same text raises them ("raised and knitted brows" of fear keep both)."""
    out = coefficients.copy()
    raised_by_any = np.zeros(len(out), bool)
    for moved, values in parts:
        raised_by_any |= moved & (values > rest)
    for moved, values in parts:
        raised, lowered = moved & (values > rest), moved & (values < rest)
        beyond = raised & (values > out)
        out[raised] = np.maximum(out[raised], values[raised])
        out[lowered] = np.minimum(out[lowered], values[lowered])
        if beyond.any():
            relax = _antagonists()[beyond].any(0) & ~moved & ~raised_by_any
            out[relax] = np.minimum(out[relax], values[relax])
    return out


@cache
def _part_masks() -> np.ndarray:
    """(P, 53) bool: the shapes each part request of the vocabulary sets."""
    from sie3d.semantics.vocabulary import load

    return np.stack([part.mask for part in load().parts.values()])


@cache
def _antagonists() -> np.ndarray:
    """(53, 53) bool: the vocabulary's antagonist shapes (a raised brow and a lowered one)."""
    from sie3d.semantics.vocabulary import antagonist_table, load

    return antagonist_table(load().antagonists)


def even_sides(coefficients: np.ndarray, references: tuple[np.ndarray, ...]) -> np.ndarray:
    """(53,) `coefficients` of a text that asks for no side (`asks_for_a_side`) with the asymmetry the text added
    taken out. The network reads some sentences with one side stronger: "a gleeful grin with raised eyebrows"
    raised the right brow 0.44 and the left 0.14. A left/right pair the text moved (by more than `MOVED` from
    each of `references`: the person's rest and the photo's expression, (53,) each) becomes the nearest of the
    symmetric readings: both sides at their mean, or a reference's own two values each moved by the mean of the
    two moves ("smile more" builds on the photo's own smile, lopsided as it may be). A pair that moves the mouth
    or the jaw sideways takes the smaller value or move instead (a symmetric face goes neither way). Pairs the
    text left alone keep the face's own asymmetry, and the gaze (`eyeLook*`: the eyes turn together, one in and
    one out) is never touched. A lid the text closes on one side only (a wink nobody asked for) closes
    half-way on both, as a brow raised on one side rises half-way on both."""
    out = coefficients.copy()
    for i, j in _PAIRS:
        pair = coefficients[[i, j]]
        if min(np.abs(pair - r[[i, j]]).max() for r in references) <= MOVED:
            continue
        even = np.min if i in _SIDEWAYS else np.mean
        readings = [np.full(2, even(pair))] + [np.clip(r[[i, j]] + even(pair - r[[i, j]]), 0.0, 1.0)
                                               for r in references]  # fmt: skip
        out[[i, j]] = min(readings, key=lambda reading: float(np.abs(reading - pair).sum()))
    return out


_PAIRS = tuple((i, int(j)) for i, j in enumerate(MIRROR) if i < j and not ICT_NAMES[i].startswith("eyeLook"))
_SIDEWAYS = frozenset(ICT_NAMES.index(n) for n in ("mouthLeft", "mouthRight", "jawLeft", "jawRight"))


def clipped(words: str, limit: int) -> str:
    """The hyphenated `words` cut to at most `limit` characters, at a word's end where that keeps at least half
    of them ("a-gleeful-grin-with", not "a-gleeful-grin-with-rais"; one long word is cut where it must)."""
    if len(words) <= limit:
        return words
    head = words[: limit + 1].rsplit("-", 1)[0].strip("-")
    return head if len(head) >= limit // 2 else words[:limit].strip("-")


def variant_names(texts: list[str], max_length: int = 40) -> list[str]:
    """Folder names for the variants of several texts: lowercase words joined by '-', cut at `max_length`
    (at a word's end, `clipped`), made unique with -2, -3 ... ("A gleeful grin!" -> "a-gleeful-grin")."""
    names: list[str] = []
    for text in texts:
        words = re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode())
        base = clipped("-".join(words), max_length) or "text"
        base = "person-text" if base == "person" else base  # "person/" holds the saved person
        name, count = base, 1
        while name in names:  # "smile", "smile", "smile 2" -> smile, smile-2, smile-2-2
            count += 1
            name = f"{base}-{count}"
        names.append(name)
    return names


def format_reading(reading: Interpretation, top_shapes: int = 12) -> str:
    """A readable table of what a text maps to: emotions as bars, then the strongest blendshapes."""
    lines = [f"{reading.text!r}  (confidence {reading.confidence:.2f}, intensity {reading.intensity:g})"]
    if reading.blend:
        lines.append("  a blend of " + " and ".join(EMOTION_LABELS[e] for e in reading.blend))
    lines.append("  emotion      probability")
    for name, p in sorted(reading.emotions.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:<12} {p:5.2f} {'#' * round(20 * p)}")
    order = np.argsort(-reading.coefficients)
    shown = [i for i in order[:top_shapes] if reading.coefficients[i] >= 0.05]
    lines.append("  blendshape          value   meaning")
    if not shown:
        lines.append("  (none: the rest face)")
    from sie3d.semantics.vocabulary import load

    shapes = load().shapes
    for i in shown:
        name = ICT_NAMES[i]
        lines.append(f"  {name:<18} {reading.coefficients[i]:5.2f}   {shapes[name].au}: {shapes[name].words}")
    lines += [f"  warning: {w}" for w in reading.warnings]
    return "\n".join(lines)
