"""check_text: what a user types, cleaned and checked before anything runs -- one test per rule."""

from __future__ import annotations

import re

import pytest

from sie3d.errors import TextError, UsageError
from sie3d.semantics.text import MAX_CHARS, check_text, detect_language

# Short English expression prompts, including single rare words, slang, British spellings, names and loanwords:
# none may be flagged as non-English.
ENGLISH = [
    "wink", "smirk", "open mouth", "pout", "a tired old man smiling faintly", "happy and sad", "grin", "frown",
    "scowl", "sneer", "grimace", "smile", "laugh", "crying", "yawn", "surprised", "disgusted", "angry", "fear",
    "shocked", "bored", "raised eyebrows", "puffed cheeks", "tongue out", "kiss", "squint",
    "a gleeful grin with raised eyebrows", "slightly annoyed", "deep in thought", "big toothy smile",
    "sad puppy eyes", "eyes closed, relaxed", "mischievous smirk", "nervous laugh", "jaw dropped in disbelief",
    "sleepy", "furious!", "meh", "lol", "OMG so excited", "sceptical look", "blank stare", "smug", "cheeky grin",
    "teary-eyed", "calm", "neutral", "poker face", "awkward smile", "wide-eyed awe", "hmm", "ok", "duck face",
    "grumpy", "pensive", "bemused", "aghast", "elated", "forlorn", "wistful smile", "sulking", "contempt",
    "disdain", "serene", "ecstatic", "a soft smile", "The face of someone who just won the lottery", "blushing",
    "giggle", "snarl", "leer", "glare", "pucker", "kissy face", "sad but hopeful", "very very angry",
    "half smile", "cringe", "goofy", "tense jaw", "a colourful, humourous grin", "facepalm", "uwu",
    "Mona Lisa smile", "café owner smiling", "naïve wonder", "Schadenfreude", "a smile à la Mona Lisa",
    "Señor Frown", "über happy",
]  # fmt: skip

# (expected language or None when only the flag is tested, prompt)
NOT_ENGLISH = [
    ("de", "ein fröhliches Lächeln mit hochgezogenen Augenbrauen"), ("de", "traurig und müde"), (None, "Lächeln"),
    ("fr", "un sourire joyeux"), ("fr", "une femme qui sourit tristement"), ("fr", "sourire"),
    ("es", "una sonrisa alegre con las cejas levantadas"), (None, "enojado"), ("es", "muy triste"),
    ("it", "un sorriso triste"), ("pt", "um sorriso feliz"), ("nl", "een blije glimlach"),
    ("pl", "szeroki uśmiech"), ("tr", "mutlu bir gülümseme"), ("sv", "ett glatt leende"),
    ("vi", "nụ cười hạnh phúc"), ("zh", "开心的笑容"), ("zh", "微笑"), ("ja", "嬉しそうな笑顔"), (None, "笑顔"),
    ("ko", "행복한 미소"), (None, "радостная улыбка"), ("ru", "грусть"), ("ar", "ابتسامة سعيدة"),
    ("hi", "खुश मुस्कान"), ("el", "χαρούμενο χαμόγελο"), ("he", "חיוך שמח"),
]  # fmt: skip


def test_english_prompts_are_not_flagged():
    flagged = {p: (c.language, c.warnings) for p in ENGLISH if (c := check_text(p)).language != "en" or c.warnings}
    assert flagged == {}


def test_other_languages_are_flagged_but_processed():
    for expected, prompt in NOT_ENGLISH:
        check = check_text(prompt)
        assert check.text == prompt and not check.truncated
        assert len(check.warnings) == 1 and "English-only" in check.warnings[0], prompt
        assert check.language not in ("en", None), prompt
        if expected:
            assert check.language == expected, prompt


def test_short_prompts_need_evidence_before_a_warning():
    """One short word that happens to be foreign ("leer" is German for "empty") decides nothing, nor does a
    detector on a few letters ("lol"); a longer phrase of unknown words goes to the detector."""
    assert detect_language("lol").reason == "undecided" and detect_language("leer").english
    assert detect_language("smirk").reason == "english words"
    assert detect_language("muy triste").reason == "foreign words"  # "triste" is in the English list, but rare
    assert detect_language("senyum bahagia sekali").reason == "detector"  # Indonesian: no word list, 19 letters
    assert detect_language("!!!").language is None


@pytest.mark.parametrize("raw", ["", "   ", "\n\t \r\n", "\u200b\u200b", "\u3000\u00a0"])
def test_empty_text_is_rejected(raw):
    with pytest.raises(TextError, match="empty") as info:
        check_text(raw)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2 and info.value.hint


@pytest.mark.parametrize(("raw", "code"), [("smile\x00", "U+0000"), ("\x07grin", "U+0007"),
                                            ("\x1b[31mangry", "U+001B"), ("happy\x7f", "U+007F"),
                                            ("sad\x85face", "U+0085"), ("pout\ud800", "U+D800")])
def test_control_characters_are_rejected(raw, code):
    with pytest.raises(TextError, match=re.escape(code)) as info:
        check_text(raw)
    assert info.value.exit_code == 2


def test_text_is_normalised():
    assert check_text("  big \n\n\t smile  ").text == "big smile"  # ordinary whitespace is fine, and collapsed
    assert check_text("ｓｍｉｌｅ").text == "smile"  # NFKC: full-width letters
    assert check_text("ﬁerce\u00a0grin").text == "fierce grin"  # ligature, no-break space
    check = check_text("smi\u200ble\u200e")
    assert check.text == "smile" and "2 invisible formatting characters" in check.warnings[0]


def test_huge_text_is_rejected_and_long_text_accepted():
    accepted = check_text("a" * MAX_CHARS)
    assert len(accepted.text) == MAX_CHARS
    with pytest.raises(TextError, match="rejected: 2,001 characters"):
        check_text("smile " * 333 + "end")
    with pytest.raises(TextError, match="rejected"):
        check_text(" " * 10 * MAX_CHARS + "smile")  # too big to be worth normalising
    with pytest.raises(TextError, match="at most 10"):
        check_text("a gleeful grin", max_chars=10)


def test_no_letters_is_warned():
    check = check_text("123 !!! -- 42")
    assert check.language is None and "no letters" in check.warnings[0]


def test_emoji_and_emoticons_are_read_as_words():
    check = check_text("😀 smiling 👍🏽 :-) ;) see ☹️")
    assert check.text == "grinning face smiling thumbs up sign smiling face winking face see frowning face"
    assert check.language == "en" and "emoji read as words" in check.warnings[0]
    assert check_text("what:) is this").text == "what:) is this"  # only emoticons standing as words


def test_text_beyond_the_window_is_cut_at_a_word(text_encoder):
    sentence = "a warm smile spreads slowly across her face while her eyes crinkle with delight"
    raw = " ".join([sentence] * 12)  # ~170 words, ~180 word pieces
    check = check_text(raw, encoder_tokens=text_encoder.count_tokens)
    assert check.truncated and raw.startswith(check.text) and raw[len(check.text)] == " "
    pieces = text_encoder.count_tokens(check.text)
    assert pieces <= 128 < text_encoder.count_tokens(check.text + raw[len(check.text):].split()[0])
    dropped = raw[len(check.text):].split()
    assert f"the last {len(dropped)} words" in check.warnings[0] and "reads 128" in check.warnings[0]
    assert check.language == "en" and len(check.warnings) == 1

    short = check_text(sentence, encoder_tokens=text_encoder.count_tokens)
    assert not short.truncated and short.text == sentence and short.warnings == ()
    wide = check_text(raw, encoder_tokens=text_encoder.count_tokens, max_tokens=256)
    assert not wide.truncated


def test_text_without_spaces_is_cut_by_characters(text_encoder):
    raw = "smile!" * 300  # one "word" of 600 word pieces: no space to cut at
    check = check_text(raw, encoder_tokens=text_encoder.count_tokens)
    assert check.truncated and 0 < len(check.text) < len(raw) and raw.startswith(check.text)
    cut = len(check.text)
    assert text_encoder.count_tokens(check.text) <= 128 < text_encoder.count_tokens(raw[: cut + 1])
    assert f"the last 1 word ({len(raw) - cut} characters" in check.warnings[-1]


def test_check_is_deterministic():
    prompts = [p for _, p in NOT_ENGLISH] + ENGLISH[:10]
    assert [check_text(p) for p in prompts] == [check_text(p) for p in prompts]
