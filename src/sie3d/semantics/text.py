"""What a user types, checked and cleaned before anything runs.

`check_text` turns the raw prompt into the text the encoder reads -- Unicode NFKC, invisible format characters
removed, whitespace collapsed, ends stripped, emoji and common emoticons written out as words -- and either
rejects it with a `TextError` (empty, control characters, far too long) or returns it with what it noticed: text
cut to the model's token window, a language other than English, no letters at all.

Emoji: the encoder's vocabulary has no emoji (they become one unknown piece), so each pictographic symbol is
replaced by its Unicode name in lower case ("\U0001F600" -> "grinning face", "\U0001F631" -> "face screaming in
fear"), which the text model reads like any other words; skin-tone modifiers and variation selectors are dropped,
and the glyph-style words of old names ("white frowning face") with them. A handful of ASCII emoticons typed as
separate words (":)", ";)", ":(" ...) are written out the same way.

Language: all-MiniLM-L6-v2 is English-only, so a prompt in another language is still encoded but warned
about. Statistical detectors guess wildly on the short prompts people type here ("smirk" -> Serbian, "pout"
-> Breton, "nervous laugh" -> French, with py3langid), so the rule (`detect_language`) asks first whether the
*words* are English, and lets a detector speak only where there is enough text for it:

1. Letters mostly outside the Latin script (CJK, Cyrillic, Arabic, Devanagari, ...): not English.
2. Every word in pyspellchecker's English word-frequency list (160k words; British spellings are mapped to the
   list's American ones): English. This settles "wink", "smirk", "pout", "happy and sad" without a detector.
3. Otherwise each word is weighed against pyspellchecker's German, Spanish, French, Italian and Portuguese lists
   (loaded only now, ~1 s once per process; Dutch would add 0.5 s, and the detector covers it). A word is
   English when it is in the English list and not `foreign_ratio` times more frequent in a foreign one
   ("triste", "con", "una" are in the English list, but far rarer there than in Spanish); foreign when it is in
   a foreign list, or has letters outside ASCII and is no English word. At least half the words English:
   English. More foreign words than English ones, with at least `min_foreign_letters` letters between them: not
   English -- so one short word never decides alone ("leer" is also German for "empty").
4. Otherwise py3langid, a naive-Bayes detector with its own model (140 language labels, deterministic, no seed),
   decides when the words outside the English list add up to `min_detector_letters` letters and it puts English
   below `max_detector_english` (Dutch, Swedish, Polish without diacritics, Indonesian ...).
5. Anything else is taken as English: slang and names ("meh", "uwu", "facepalm") are not worth a warning.

tests/test_text.py holds the prompts this rule was tuned on: 90 short English expression prompts (none
flagged) and 27 in 18 other languages (all flagged).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from sie3d.errors import TextError
from sie3d.semantics.encoder import EncoderConfig

# Longest accepted prompt, after whitespace is collapsed. The model reads 128 word pieces, about 90 English words
# or 500-600 characters; 2,000 characters (~350 words, four windows) is as long as a description can get while
# its beginning still carries it. Longer input is a pasted document: cutting three quarters of it silently would
# give a result that ignores most of what was written, so it is rejected instead.
MAX_CHARS = 2000
# Raw input longer than this many times `max_chars` is rejected before it is even normalised.
_RAW_FACTOR = 10
_ALLOWED_CONTROLS = frozenset("\t\n\r")
WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")  # a word in any script ("don't" whole)
# British -> American spellings, one rewrite at a time (pyspellchecker's English list is American).
_BRITISH = tuple((re.compile(a), b) for a, b in (
    (r"our", "or"), (r"is(e|ed|es|ing|ation|ations)$", r"iz\1"), (r"ys(e|ed|es|ing)$", r"yz\1"),
    (r"tre(s?)$", r"ter\1"), (r"^sceptic", "skeptic"), (r"ogue(s?)$", r"og\1"), (r"ll(ed|ing)$", r"l\1"),
    (r"ae", "e"), (r"oe", "e"),
))  # fmt: skip
FOREIGN_LEXICONS = ("de", "es", "fr", "it", "pt")
# Emoticons written as a word of their own -> the Unicode name of the emoji they stand for.
EMOTICONS = {
    ":)": "smiling face", ":-)": "smiling face", ":]": "smiling face", ":(": "sad face",
    ":-(": "sad face", ";)": "winking face", ";-)": "winking face", ":D": "grinning face",
    ":-D": "grinning face", "XD": "grinning squinting face", ":o": "face with open mouth",
    ":O": "face with open mouth", ":-o": "face with open mouth", ":P": "face with stuck-out tongue",
    ":p": "face with stuck-out tongue", ":|": "neutral face", ":'(": "crying face", ">:(": "angry face",
    ":/": "confused face", ":-/": "confused face",
}  # fmt: skip
_GLYPH_WORDS = frozenset({"WHITE", "BLACK", "HEAVY"})  # how old symbol names describe the glyph, not the face


@dataclass(frozen=True)
class TextCheck:
    """The cleaned prompt and what was noticed.

    text: normalised (NFKC, format characters removed, whitespace collapsed, stripped) and cut to the token
        window when `truncated`.
    warnings: one sentence each, for the user.
    language: "en" when the text was judged English, the detected code (ISO 639, e.g. "de", "zh") when not,
        None when there was nothing to judge (no letters).
    truncated: the text was cut to the encoder's window.
    """

    text: str
    warnings: tuple[str, ...]
    language: str | None
    truncated: bool


@dataclass(frozen=True)
class LanguageRule:
    """Thresholds of `detect_language` (see the module docstring for the rule they belong to)."""

    non_latin_share: float = 0.5  # more letters than this outside the Latin script: not English
    foreign_ratio: float = 10.0  # a word is foreign when that many times more frequent in a foreign list
    min_foreign_letters: int = 5  # foreign words must add up to this many letters to decide
    min_detector_letters: int = 10  # the detector judges only with this many letters outside English words
    max_detector_english: float = 0.05  # ... and only when it gives English less than this probability


@dataclass(frozen=True)
class LanguageVerdict:
    """language: "en", another code, or None (no letters); english: whether the encoder can read it;
    reason: which step of the rule decided ("no letters", "script", "english words", "foreign words",
    "detector", "undecided")."""

    language: str | None
    english: bool
    reason: str


# -- lexicons and detector (loaded on first use, once per process) --------------------------------------


@cache
def _lexicon(lang: str) -> tuple[dict[str, int], int]:
    """pyspellchecker's word-frequency list for `lang` (lower-case words -> counts) and its total count.

    Foreign lists keep only words counted above the list's floor (50): most of the German and Portuguese lists
    (320k and 370k words) sit at the floor -- dictionary fill-ins without a real frequency -- and would cost
    ~150 MB of memory for words a prompt hardly ever holds. The English list is kept whole: membership is what
    clears a word there."""
    from spellchecker import SpellChecker

    frequency = SpellChecker(language=lang, distance=1).word_frequency
    words, total = frequency.dictionary, frequency.total_words
    if lang != "en":
        floor = min(words.values())
        words = {w: c for w, c in words.items() if c > floor}
    return words, total


@cache
def _detector():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _english_frequency(word: str) -> float:
    """Relative frequency of `word` in English (its British spelling mapped to American), 0 if unknown."""
    words, total = _lexicon("en")
    candidates = [word, *(rx.sub(rep, word) for rx, rep in _BRITISH if rx.search(word))]
    if "'" in word:
        candidates.append(word.split("'")[0])
    return max(words.get(w, 0) for w in candidates) / total


def _foreign_frequency(word: str) -> tuple[str | None, float]:
    best: tuple[str | None, float] = (None, 0.0)
    for lang in FOREIGN_LEXICONS:
        words, total = _lexicon(lang)
        if (freq := words.get(word, 0) / total) > best[1]:
            best = (lang, freq)
    return best


def _is_latin(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN")


def detect_language(text: str, rule: LanguageRule = LanguageRule()) -> LanguageVerdict:
    """Whether `text` (already normalised) is English, by the rule in the module docstring."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return LanguageVerdict(None, False, "no letters")
    if sum(not _is_latin(c) for c in letters) > rule.non_latin_share * len(letters):
        return LanguageVerdict(_top_language(text), False, "script")
    words = [w.lower().replace("\u2019", "'") for w in WORD.findall(text)]
    english = [_english_frequency(w) for w in words]
    if all(f > 0 for f in english):
        # The usual prompt: every word is in the English list, and the foreign lists are never loaded. Foreign
        # words that are also in the English list ("con", "una", "triste") count against English only when
        # other words are not English.
        return LanguageVerdict("en", True, "english words")
    foreign: list[tuple[str, str | None]] = []  # (word, lexicon language or None for non-ASCII evidence)
    n_english = 0
    for word, f_en in zip(words, english, strict=True):
        lang, f_foreign = _foreign_frequency(word)
        if f_en > 0 and f_foreign < rule.foreign_ratio * f_en:
            n_english += 1
        elif f_foreign > 0:
            foreign.append((word, lang))
        elif not word.isascii():
            foreign.append((word, None))
    if 2 * n_english >= len(words):
        return LanguageVerdict("en", True, "english words")
    if len(foreign) > n_english and sum(len(w) for w, _ in foreign) >= rule.min_foreign_letters:
        return LanguageVerdict(_top_language(text, {lang for _, lang in foreign if lang}), False, "foreign words")
    unknown_letters = sum(len(w) for w, f in zip(words, english, strict=True) if f == 0)
    if unknown_letters >= rule.min_detector_letters:
        ranking = _detector().rank(text)
        if ranking[0][0] != "en" and dict(ranking)["en"] < rule.max_detector_english:
            return LanguageVerdict(ranking[0][0], False, "detector")
    return LanguageVerdict("en", True, "undecided")


def _top_language(text: str, candidates: set[str] = frozenset()) -> str:
    """A name for text judged not English: the detector's first choice when it is fairly sure (p >= 0.2),
    else the candidate (languages whose word lists matched) it ranks highest, else its first non-English choice."""
    ranking = [(lang, p) for lang, p in _detector().rank(text) if lang != "en"]
    if ranking[0][1] >= 0.2 or not candidates:
        return ranking[0][0]
    return next((lang for lang, _ in ranking if lang in candidates), ranking[0][0])


# -- check_text -------------------------------------------------------------------------------------------


def _normalise(raw: str) -> tuple[str, int]:
    """NFKC, format characters (zero-width spaces, direction marks, soft hyphens) removed, whitespace
    collapsed to single spaces, ends stripped. Returns the text and how many format characters went."""
    text = unicodedata.normalize("NFKC", raw)
    kept = [c for c in text if unicodedata.category(c) != "Cf"]
    return " ".join("".join(kept).split()), len(text) - len(kept)


def _spell_out_emoji(text: str) -> tuple[str, int]:
    """Emoji (Unicode category So) -> their names in words, skin-tone modifiers and variation selectors dropped;
    emoticons standing as words -> their emoji's name. Returns the text and how many symbols were spelled out."""
    out, count = [], 0
    for char in text:
        category = unicodedata.category(char)
        if category == "So":
            words = [w for w in unicodedata.name(char, "").split() if w not in _GLYPH_WORDS]
            if words:
                out.append(f" {' '.join(words).lower()} ")
                count += 1
                continue
        if category == "Sk" and unicodedata.name(char, "").startswith("EMOJI MODIFIER"):
            continue
        if "\ufe00" <= char <= "\ufe0f":  # variation selectors: text or emoji presentation
            continue
        out.append(char)
    words = []
    for word in "".join(out).split():
        if word in EMOTICONS:
            words.append(EMOTICONS[word])
            count += 1
        else:
            words.append(word)
    return " ".join(words), count


def _reject_controls(raw: str) -> None:
    for position, char in enumerate(raw):
        category = unicodedata.category(char)
        if (category == "Cc" and char not in _ALLOWED_CONTROLS) or category == "Cs":
            kind = "a control character" if category == "Cc" else "an invalid character (lone surrogate)"
            raise TextError(
                f"the expression text contains {kind}: U+{ord(char):04X} at position {position}",
                "type or paste plain text; tabs and line breaks are fine, other control characters are not",
            )


def _cut_to_window(text: str, count: Callable[[str], int], max_tokens: int) -> tuple[str, str]:
    """Longest prefix of `text` within `max_tokens` word pieces, cut at a space when one fits; returns
    (kept, warning)."""
    total = count(text)
    spaces = [i for i, c in enumerate(text) if c == " "]
    # Candidate cut points, ascending: word ends if at least the first word fits, else every character.
    cuts = [*spaces, len(text)]
    if count(text[: cuts[0]]) > max_tokens:
        cuts = list(range(1, len(text) + 1))
    lo, hi = -1, len(cuts) - 1  # invariant: cuts[lo] fits (or lo == -1), cuts[hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(text[: cuts[mid]]) <= max_tokens:
            lo = mid
        else:
            hi = mid
    kept = text[: cuts[lo]].rstrip() if lo >= 0 else ""
    dropped = text[len(kept):].strip()
    n_dropped = len(dropped.split())
    preview = dropped if len(dropped) <= 40 else dropped[:37] + "..."
    warning = (
        f"the text is {total} word pieces long and the text model reads {max_tokens}: the last {n_dropped} "
        f"word{'s' if n_dropped != 1 else ''} ({len(dropped)} characters, from \"{preview}\") were dropped"
    )
    return kept, warning


def check_text(
    raw: str,
    *,
    max_chars: int = MAX_CHARS,
    encoder_tokens: Callable[[str], int] | None = None,
    max_tokens: int = EncoderConfig.max_tokens,
    language_rule: LanguageRule = LanguageRule(),
) -> TextCheck:
    """Clean and check one prompt; raise `TextError` (exit code 2) when it cannot be used.

    raw: what the user typed. max_chars: longest accepted text after normalisation (see `MAX_CHARS`).
    encoder_tokens: counts the word pieces of a text, [CLS]/[SEP] included (`TextEncoder.count_tokens`); with it,
        text beyond `max_tokens` (the encoder's ``config.max_tokens``) is cut at a word boundary and a warning
        says what was dropped. Without it no cut is made.
    """
    if not isinstance(raw, str):
        raise TypeError(f"check_text takes a str, not {type(raw).__name__}")
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    if len(raw) > _RAW_FACTOR * max_chars:
        raise _too_long(len(raw), max_chars)
    _reject_controls(raw)
    text, n_format = _normalise(raw)
    if not text:
        raise TextError(
            "the expression text is empty" + (" (it holds only spaces or invisible characters)" if raw else ""),
            'describe the expression in words, e.g. "a gleeful grin with raised eyebrows"',
        )
    if len(text) > max_chars:
        raise _too_long(len(text), max_chars)

    warnings = []
    text, n_symbols = _spell_out_emoji(text)
    if n_symbols:
        warnings.append(f"emoji read as words: \"{text}\"" if len(text) <= 80 else
                        f"{n_symbols} emoji or emoticons read as words (by their Unicode names)")
    if n_format:
        warnings.append(f"removed {n_format} invisible formatting character{'s' if n_format != 1 else ''} "
                        "(zero-width spaces, direction marks or soft hyphens)")
    verdict = detect_language(text, language_rule)
    if verdict.reason == "no letters":
        warnings.append("the text has no letters: the text model reads words, not digits or punctuation")
    elif not verdict.english:
        warnings.append(f"the text looks like '{verdict.language}', not English: the text model is English-only; "
                        "the result may ignore your words")
    truncated = False
    if encoder_tokens is not None and encoder_tokens(text) > max_tokens:
        text, warning = _cut_to_window(text, encoder_tokens, max_tokens)
        warnings.append(warning)
        truncated = True
    return TextCheck(text, tuple(warnings), verdict.language, truncated)


def _too_long(n_chars: int, max_chars: int) -> TextError:
    return TextError(
        f"the expression text was rejected: {n_chars:,} characters, at most {max_chars:,} are accepted",
        "describe the expression in a sentence or two; the text model reads only about the first 90 words",
    )
