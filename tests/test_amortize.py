"""The amortised refinement (sie3d.semantics.amortize): what it trains on stays apart from what evaluates it,
and the fine-tuned network it ships loads and reads text like the network it started from."""

from __future__ import annotations

import numpy as np
import pytest

from sie3d.eval.harness import PROMPTS as PROMPTS_DIR
from sie3d.semantics import corpus as corpus_module
from sie3d.semantics.amortize import AMORTIZED_WEIGHTS, AmortizeConfig, basic_sentences, training_photos
from sie3d.semantics.prompts import read_prompts

PROMPTS = ("emotion_words.tsv", "emotion_paraphrases.tsv")


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return basic_sentences(corpus_module.generate(corpus_module.CorpusConfig()))


def test_never_trains_on_the_evaluation_people(faces):
    photos = training_photos(faces, AmortizeConfig())
    assert len(photos) >= 20
    assert not [p.name for p in photos if p.name.startswith("london_")]


def test_never_trains_on_the_evaluation_prompts(sentences):
    evaluation = {t.prompt.lower() for name in PROMPTS for t in read_prompts(PROMPTS_DIR / name)}
    assert len(sentences) > 1000
    paraphrases = {t.prompt.lower() for t in read_prompts(PROMPTS_DIR / PROMPTS[1])}
    assert not paraphrases & {s.lower() for s in sentences}  # the hand-written paraphrases are held out
    # the plain emotion words are the vocabulary's own words: recall, as in the text model's own figures
    assert evaluation - paraphrases


@pytest.mark.skipif(not AMORTIZED_WEIGHTS.is_file(), reason="the amortised network is not trained in this checkout")
def test_the_amortised_network_loads_and_keeps_reading_text():
    from sie3d.assets.registry import check, spec
    from sie3d.expressions import EMOTIONS
    from sie3d.semantics.interpret import TextModel

    states = check(spec("conditioning_amortized"))
    assert states and all(s.state == "ok" for s in states), states  # listed in the manifest, sha256 and size
    shipped, amortized = TextModel(), TextModel(weights=AMORTIZED_WEIGHTS)
    texts = ["furious", "terrified", "a happy smile", "close to tears", "purple banana"]
    for a, b in zip(shipped.interpret_many(texts), amortized.interpret_many(texts), strict=True):
        assert a.top_emotion == b.top_emotion, (a.text, a.top_emotion, b.top_emotion)
        assert np.abs(a.coefficients - b.coefficients).max() < 0.6
    assert amortized.interpret("purple banana").confidence < 0.5
    assert EMOTIONS[int(amortized.interpret("furious").emotion_probabilities.argmax())] == "anger"
