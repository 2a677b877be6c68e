"""Prompt files: one prompt per line with the emotion it should read as (``prompt<TAB>emotion``).

`sie3d eval --prompts` reads them, and so does the text model's training for its hand-written report
(`sie3d.semantics.train`); this module sits on the generation side so that training never imports the
evaluation harness (and its held-out judges).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sie3d.errors import UsageError
from sie3d.expressions import EMOTIONS, canonical_emotion
from sie3d.semantics.text import check_text


def check_prompt(text: str, where: str) -> str:
    """`text` if it can be used as a prompt (`check_text`), else a `UsageError` that says `where` it came from
    (``file:line``, ``--text`` ...)."""
    try:
        check_text(text)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.message}", exc.hint) from None
    return text


@dataclass(frozen=True)
class Target:
    """What an avatar should show: the prompt text, the emotion it is built from, the emotion expected."""

    prompt: str
    emotion: str
    expected: str


def read_prompts(path: Path) -> tuple[Target, ...]:
    """One prompt per line, ``prompt<TAB>expected_emotion`` (the emotion may be left out when the prompt is
    itself an emotion word); blank lines and ``#`` comments skipped. Free text is read by the `text`
    ablation; the `prototype` ablation shows the expected emotion's prototype for the same target (the
    baseline the text must not read worse than). sie3d ships ``eval/prompts/emotion_words.tsv`` and
    ``emotion_paraphrases.tsv``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"prompts file {path} not found", "pass a text file with one prompt per line")
    targets = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        prompt, _, expected_text = line.partition("\t")
        prompt = check_prompt(prompt.strip(), f"{path}:{number}")
        expected_text = expected_text.split("\t")[0].strip()
        emotion = canonical_emotion(prompt) or canonical_emotion(expected_text)
        if emotion is None:
            raise UsageError(f"{path}:{number}: the prompt {prompt!r} needs the emotion it should read as",
                             f"write prompt<TAB>emotion with one of: {', '.join(EMOTIONS)}")  # fmt: skip
        expected = canonical_emotion(expected_text) if expected_text else emotion
        if expected is None:
            raise UsageError(f"{path}:{number}: expected emotion {expected_text.strip()!r} is not one of the seven",
                             f"write prompt<TAB>emotion with one of: {', '.join(EMOTIONS)}")  # fmt: skip
        targets.append(Target(prompt, emotion, expected))
    if not targets:
        raise UsageError(f"{path} holds no prompts", "write one prompt per line")
    return tuple(targets)
