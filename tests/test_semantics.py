"""The expression vocabulary, the corpus generator and the conditioning network (real trained weights)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from sie3d.expressions import EMOTIONS, prototype
from sie3d.head.names import ICT_NAMES
from sie3d.semantics import corpus as corpus_module
from sie3d.semantics.conditioning import IDENTITY_DIM, ConditioningConfig, ConditioningNet, Words, identity_features
from sie3d.semantics.corpus import CorpusConfig, Generator, apply_recipe, emotion_reading
from sie3d.semantics.vocabulary import load, mirror

SMALL = CorpusConfig(train_sizes=dict.fromkeys(corpus_module.CATEGORIES, 150), test_size=60)


def test_vocabulary_names_every_ict_shape_with_action_units_and_words():
    voc = load()
    assert set(voc.shapes) == set(ICT_NAMES)
    for shape in voc.shapes.values():
        assert re.search(r"AU\d+", shape.au), shape
        assert len(shape.words.split()) >= 3, shape
        assert shape.region in ("brows", "eyes", "gaze", "cheeks", "nose", "mouth", "jaw")


def test_vocabulary_has_the_required_concepts():
    voc = load()
    required = [
        "anger", "disgust", "fear", "happy", "neutral", "sadness", "surprise", "contempt",
        "happily_surprised", "sadly_angry", "fearfully_surprised", "happily_disgusted", "sadly_fearful",
        "sadly_surprised", "sadly_disgusted", "fearfully_angry", "fearfully_disgusted", "angrily_surprised",
        "angrily_disgusted", "disgustedly_surprised", "appalled", "hatred", "awed",
        "smirk", "wink", "pout", "kiss", "grimace", "yawn", "scream", "skeptical", "confused", "sleepy",
        "laughing", "crying", "sneer", "puffed_cheeks", "eyes_closed", "looking_left", "looking_right",
        "looking_up", "looking_down",
    ]  # fmt: skip
    assert not set(required) - set(voc.concepts)
    for concept in voc.concepts.values():
        assert concept.coefficients.shape == (53,) and concept.coefficients.min() >= 0
        assert concept.coefficients.max() <= 1
        assert abs(concept.emotion.sum() - 1) < 1e-5
        assert concept.adj or concept.verb or concept.noun
    # The basic emotions read as themselves; the one-sided concepts really are one-sided.
    for name in ("anger", "disgust", "fear", "happy", "neutral", "sadness", "surprise"):
        assert voc.concepts[name].top_emotion == name
        # The text targets of the seven emotion words are the evaluation's prototypes.
        np.testing.assert_array_equal(voc.concepts[name].coefficients, prototype(name))
    for concept in voc.concepts.values():
        if concept.side:
            c = concept.coefficients
            assert np.abs(c - mirror(c)).max() > 0.2, concept.name


def test_a_one_sided_part_beside_an_expression_keeps_the_expression_on_both_sides():
    """Compounds such as "smiling, left eyebrow raised": the named part set on its side only (the key), and the
    expression's own shapes kept whole on both sides."""
    corpus = corpus_module.generate(SMALL)
    sided = np.flatnonzero((corpus.category == "compound") & (corpus.side != ""))
    assert len(sided) > 10
    names = np.array(ICT_NAMES)
    for i in sided:
        key, add, side = corpus.key[i], corpus.add[i], corpus.side[i]
        other = "R" if side == "L" else "L"
        assert key.any() and not any(n.endswith(f"_{other}") for n in names[key]), corpus.texts[i]
        assert (add[key] > 0).all(), corpus.texts[i]  # set on its side (the other side keeps the expression's)
        assert re.search(r"\b(left|right)\b", corpus.texts[i]), corpus.texts[i]
    smiling = [i for i in sided if corpus.texts[i].startswith(("smiling", "happy"))]
    for i in smiling:  # the smile itself on both corners, unless the part is about the mouth's corners
        if not corpus.key[i][[ICT_NAMES.index("mouthSmile_L"), ICT_NAMES.index("mouthSmile_R")]].any():
            add = corpus.add[i]
            assert abs(add[ICT_NAMES.index("mouthSmile_L")] - add[ICT_NAMES.index("mouthSmile_R")]) < 1e-6


def test_generator_is_deterministic_in_its_seed():
    a, b = corpus_module.generate(SMALL), corpus_module.generate(SMALL)
    assert a.texts == b.texts and a.digest == b.digest
    for field in ("keep_photo", "keep_rest", "add", "confidence", "key", "negated"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = corpus_module.generate(CorpusConfig(seed=1, train_sizes=SMALL.train_sizes, test_size=SMALL.test_size))
    assert c.texts != a.texts


def test_situations_bring_their_emotion_and_a_new_category_leaves_the_others_as_they_were():
    voc = load()
    for name in ("anger", "disgust", "fear", "happy", "neutral", "sadness", "surprise"):
        assert len(voc.concepts[name].situation) >= 10, name
        assert not any(re.search(r"\b(left|right)\b", m) for m in voc.concepts[name].situation), name
    corpus = corpus_module.generate(SMALL)
    rows = np.flatnonzero(corpus.category == "situation")
    assert len(rows) == 150 + 60
    concepts = {n: voc.concepts[n] for n in corpus_module.BASIC}
    for row in rows:
        text = corpus.texts[row]
        owner = [c for c in concepts.values() if any(m in text for m in c.situation)]
        assert len(owner) == 1, text  # a moment belongs to one emotion, and the sentence names it
        assert corpus.expected[row] == owner[0].top_emotion
        np.testing.assert_allclose(corpus.add[row], owner[0].coefficients, atol=1e-6)
    generator = Generator(SMALL)
    built = generator.build()
    training = "\n".join(t for t, s in zip(built.texts, built.split, strict=True) if s == "train")
    for name, concept in concepts.items():
        _, held = generator.partition(f"{name}:situation", concept.situation, keep_first=False)
        assert held and not any(moment in training for moment in held), name
    # Every category draws from its own seeded stream: without situations the other sentences are unchanged.
    fewer = corpus_module.generate(CorpusConfig(train_sizes={**SMALL.train_sizes, "situation": 0}, test_size=60))
    keep = corpus.category != "situation"
    assert [t for t, k in zip(corpus.texts, keep, strict=True) if k] == \
        [t for t, c in zip(fewer.texts, fewer.category, strict=True) if c != "situation"]


def test_held_out_sentences_words_and_templates_are_unseen_in_training():
    generator = Generator(SMALL)
    corpus = generator.build()
    train = [t for t, s in zip(corpus.texts, corpus.split, strict=True) if s == "train"]
    test = [t for t, s in zip(corpus.texts, corpus.split, strict=True) if s == "test"]
    assert set(corpus.category[corpus.split == "test"]) == set(corpus_module.CATEGORIES)
    assert not set(test) & set(train) - {t for t, c in zip(corpus.texts, corpus.category, strict=True)
                                          if c == "plain"}  # fmt: skip
    joined = "\n".join(train)
    # Held-out multi-word phrases of the basic emotions never occur in a training sentence.
    for name in ("happy", "sadness", "anger", "surprise", "disgust", "fear"):
        for form in ("verb", "noun"):
            _, held = generator.partition(f"{name}:{form}", getattr(generator.voc.concepts[name], form))
            for phrase in held:
                if len(phrase.split()) >= 3:
                    assert phrase not in joined, phrase
    assert "purple banana" not in joined


def test_recipes_leave_other_parts_at_rest_and_relative_requests_use_the_photo():
    generator = Generator(SMALL)
    voc = generator.voc
    rest = np.full(53, 0.05, np.float32)
    smiling = rest.copy()
    smiling[[ICT_NAMES.index("mouthSmile_L"), ICT_NAMES.index("mouthSmile_R")]] = 0.8
    open_mouth = generator.recipe.with_part(generator.recipe.absolute(np.zeros(53, np.float32)),
                                            voc.parts["open_mouth"].values, voc.parts["open_mouth"].mask)
    target = apply_recipe(*open_mouth, smiling, rest)
    assert target[ICT_NAMES.index("jawOpen")] == pytest.approx(0.6)
    others = ~voc.parts["open_mouth"].mask
    np.testing.assert_allclose(target[others & (generator.recipe._opposed(voc.parts["open_mouth"].mask) == 0)],
                               rest[others & (generator.recipe._opposed(voc.parts["open_mouth"].mask) == 0)])
    more = apply_recipe(*generator.recipe.relative(voc.concepts["happy"].coefficients, 0.5), smiling, rest)
    assert more[ICT_NAMES.index("mouthSmile_L")] > 0.8
    neutral = apply_recipe(*generator.recipe.absolute(voc.concepts["neutral"].coefficients), smiling, rest)
    np.testing.assert_allclose(neutral, rest)
    reading = emotion_reading(voc.concepts["happy"].coefficients[None])[0]
    assert EMOTIONS[int(reading.argmax())] == "happy"


def test_the_rest_lip_seal_is_an_antagonist_of_every_mouth_shape_in_the_text_targets():
    from sie3d.expressions import MOUTH_SHAPES
    from sie3d.head.fit import REST_LIP_SEAL

    generator = Generator(SMALL)
    voc = generator.voc
    seal = ICT_NAMES.index(REST_LIP_SEAL[0])
    antagonists = {frozenset(p) for p in voc.antagonists}
    assert all(frozenset((seal, ICT_NAMES.index(n))) in antagonists for n in MOUTH_SHAPES)
    rest = np.zeros(53, np.float32)
    rest[seal] = REST_LIP_SEAL[1]
    happy = apply_recipe(*generator.recipe.absolute(voc.concepts["happy"].coefficients), rest, rest)
    assert happy[seal] == 0  # a smile parts the lips
    brows = generator.recipe.with_part(generator.recipe.absolute(np.zeros(53, np.float32)),
                                       voc.parts["raised_brows"].values, voc.parts["raised_brows"].mask)
    assert apply_recipe(*brows, rest, rest)[seal] == pytest.approx(REST_LIP_SEAL[1])  # the mouth stays at rest


def test_network_output_ranges_and_gradients():
    torch.manual_seed(0)
    np.random.seed(0)
    words = Words(torch.randint(0, 100, (5, 12)), torch.arange(12)[None].repeat(5, 1) < torch.tensor([[3], [5], [12],
                                                                                                     [1], [7]]),
                  torch.randn(100, 384))  # fmt: skip
    for fusion, word_branch in (("film", True), ("mlp", True), ("text", True), ("film", False)):
        net = ConditioningNet(ConditioningConfig(fusion, words=word_branch))
        text = torch.nn.functional.normalize(torch.randn(5, 384), dim=-1)
        person = torch.from_numpy(identity_features(np.random.rand(5, 128), np.random.randn(5, 100),
                                                    np.random.rand(5, 53), np.random.rand(5, 53)))  # fmt: skip
        out = net(text, person.float(), words)
        assert out.coefficients.shape == (5, 53) and out.emotion_logits.shape == (5, 7)
        assert out.coefficients.min() >= 0 and out.coefficients.max() <= 1
        assert torch.allclose(out.emotions.sum(-1), torch.ones(5))
        assert ((out.confidence >= 0) & (out.confidence <= 1)).all()
        loss = net.loss(out, person.float(), torch.rand(5, 53), torch.softmax(torch.randn(5, 7), -1),
                        torch.ones(5))["total"]
        loss.backward()
        assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="expected"):
        ConditioningNet()(torch.zeros(2, 384), torch.zeros(2, IDENTITY_DIM - 1), words.select(slice(0, 2)))
    with pytest.raises(ValueError, match="word pieces"):
        ConditioningNet()(torch.zeros(2, 384), torch.zeros(2, IDENTITY_DIM))
