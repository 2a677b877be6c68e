"""The evaluation harness (sie3d.eval: stats, ablations, references, harness, `sie3d eval`).

Real models on real photos, no mocks: the ablations are called on a real reconstructed person, and the harness
runs end to end through the CLI on two London photos (one intensity, frontal + in-photo views).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from sie3d.errors import UsageError
from sie3d.eval import ablations, harness, report
from sie3d.eval.references import LabelledPhoto, identity_reference
from sie3d.eval.stats import Interval, bootstrap_mean
from sie3d.expressions import EMOTION_ALIASES, EMOTIONS, canonical_emotion, on_top_of_rest, prototype

from conftest import run_cli

ENV = {"SIE3D_CACHE": "/tmp/sie3d-cache"}


# -- bootstrap ---------------------------------------------------------------------------------------


def _bernoulli(p: float, n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def test_bootstrap_covers_known_p_and_narrows_with_n() -> None:
    """Samples with exactly 30% successes: the interval holds 0.3, has the binomial width, shrinks as 1/sqrt(n)."""
    p = 0.3
    widths = []
    for n in (100, 400, 1600):
        values = np.random.default_rng(n).permutation(np.arange(n) < round(p * n)).astype(float)
        interval = bootstrap_mean(values, seed=0)
        assert interval.mean == pytest.approx(p) and interval.low < p < interval.high, (n, interval)
        assert interval.low <= interval.mean <= interval.high and interval.n == n == interval.clusters
        # The normal-approximation half width is 1.96 sqrt(p(1-p)/n); the percentile interval is close to it.
        assert interval.high - interval.low == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p) / n), rel=0.25)
        widths.append(interval.high - interval.low)
    assert widths[0] / widths[2] == pytest.approx(4.0, rel=0.25)  # width ~ 1/sqrt(n)


def test_bootstrap_coverage_close_to_nominal() -> None:
    """Over 300 independent samples of n=60 (p=0.3) the 95% interval holds p about 95% of the time."""
    intervals = [bootstrap_mean(_bernoulli(0.3, 60, seed=1000 + k), resamples=500, seed=k) for k in range(300)]
    hits = [i.low <= 0.3 <= i.high for i in intervals]
    assert 0.89 <= np.mean(hits) <= 0.99, np.mean(hits)


def test_bootstrap_is_deterministic_and_seeded() -> None:
    values = _bernoulli(0.5, 50, seed=7)
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3)
    assert bootstrap_mean(values, seed=3) != bootstrap_mean(values, seed=4)


def test_cluster_bootstrap_resamples_whole_groups() -> None:
    """Each value repeated 5 times in its own group gives exactly the interval of the values themselves;
    ignoring the groups would pretend 5x the data and give a narrower interval."""
    values = _bernoulli(0.4, 40, seed=11)
    repeated, groups = np.repeat(values, 5), np.repeat(np.arange(40), 5)
    plain, clustered = bootstrap_mean(values, seed=2), bootstrap_mean(repeated, groups, seed=2)
    assert (clustered.mean, clustered.low, clustered.high) == pytest.approx((plain.mean, plain.low, plain.high))
    assert clustered.n == 200 and clustered.clusters == 40
    naive = bootstrap_mean(repeated, seed=2)
    assert naive.high - naive.low < 0.6 * (clustered.high - clustered.low)


def test_bootstrap_edge_cases() -> None:
    constant = bootstrap_mean([1.0] * 10)
    assert (constant.mean, constant.low, constant.high) == (1.0, 1.0, 1.0)
    with_nan = bootstrap_mean([1.0, np.nan, 0.0, 1.0])
    assert with_nan.n == 3 and with_nan.mean == pytest.approx(2 / 3)
    single = bootstrap_mean([0.2, 0.4], groups=["a", "a"])
    assert single.mean == pytest.approx(0.3) and np.isnan(single.low) and "no interval" in single.format()
    back = single.to_json()  # JSON has no NaN: the interval comes back as None, and still formats
    assert back["low"] is None and "no interval" in Interval(**back).format()
    empty = bootstrap_mean([])
    assert empty.n == 0 and empty.format() == "–" and empty.to_json()["mean"] is None
    assert re.fullmatch(r"0\.50 \[\d\.\d\d, \d\.\d\d\] n=4", bootstrap_mean([0, 1, 0, 1]).format())
    with pytest.raises(ValueError, match="groups"):
        bootstrap_mean([1.0, 2.0], groups=[0])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean([1.0], confidence=1.5)


# -- ablation registry -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reconstruction(happy, models):
    return happy, models


def test_registry_lookup_register_and_unknown_name() -> None:
    assert ablations.names()[:3] == ["photo", "rest", "prototype"]
    assert [a.name for a in ablations.parse("rest, photo,rest")] == ["rest", "photo"]
    assert not ablations.get("rest").uses_emotion and ablations.get("prototype").uses_intensity
    with pytest.raises(UsageError, match="unknown ablation 'nope'") as info:
        ablations.get("nope")
    assert "prototype" in info.value.hint
    with pytest.raises(UsageError, match="empty"):
        ablations.parse(" , ")

    @ablations.register("test-zero", description="all coefficients zero")
    def _zero(result, models, emotion, intensity):
        return np.zeros(53, np.float32)

    try:
        assert ablations.get("test-zero").function is _zero and "test-zero" in ablations.names()
        with pytest.raises(ValueError, match="already registered"):
            ablations.register("test-zero", description="again")(_zero)
        ablations.register("test-zero", description="again", uses_emotion=False, replace=True)(_zero)
        assert not ablations.get("test-zero").uses_emotion
    finally:
        ablations.unregister("test-zero")
    with pytest.raises(UsageError):
        ablations.get("test-zero")
    with pytest.raises(ValueError, match="commas"):
        ablations.register("a,b", description="bad name")


def test_builtin_ablations_on_a_real_reconstruction(reconstruction) -> None:
    result, models = reconstruction
    photo = ablations.get("photo").expression(result, models, "happy", 1.0)
    rest = ablations.get("rest").expression(result, models, "happy", 1.0)
    np.testing.assert_array_equal(photo, result.photo_expression)
    np.testing.assert_array_equal(rest, result.rest_expression)
    proto = ablations.get("prototype")
    for emotion in EMOTIONS:
        for intensity in (0.5, 1.0, 1.5):
            np.testing.assert_allclose(proto.expression(result, models, emotion, intensity),
                                       on_top_of_rest(result.rest_expression, prototype(emotion, intensity)))
    np.testing.assert_allclose(proto.expression(result, models, "neutral", 1.0), rest)  # neutral = the rest avatar
    strong, weak = proto.expression(result, models, "fear", 1.5), proto.expression(result, models, "fear", 0.5)
    assert (strong >= weak).all() and strong.sum() > weak.sum()
    wrinkles = ablations.get("wrinkles")  # the same expressions, rendered with their wrinkles
    assert wrinkles.wrinkles and wrinkles.uses_intensity and not proto.wrinkles
    np.testing.assert_array_equal(wrinkles.expression(result, models, "anger", 1.0),
                                  proto.expression(result, models, "anger", 1.0))  # fmt: skip

    seen = {}

    @ablations.register("test-prompt", description="records its prompt", takes_prompt=True)
    def _prompt(result, models, emotion, intensity, *, prompt):
        seen["prompt"] = prompt
        return None

    @ablations.register("test-bad-shape", description="wrong length")
    def _bad(result, models, emotion, intensity):
        return np.zeros(52)

    try:
        out = ablations.get("test-prompt").expression(result, models, "happy", 1.0, prompt="glad")
        assert seen["prompt"] == "glad" and np.array_equal(out, result.photo_expression)  # None = no change
        with pytest.raises(ValueError, match="shape"):
            ablations.get("test-bad-shape").expression(result, models, "happy", 1.0)
    finally:
        ablations.unregister("test-prompt")
        ablations.unregister("test-bad-shape")


# -- prompts, views, render landmarks ------------------------------------------------------------------


def test_prompts_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("happy\n# a comment\n\nsad\tsadness\nSurprised\tfear\nANGRY\n")
    targets = harness.read_prompts(path)
    assert [(t.prompt, t.emotion, t.expected) for t in targets] == [
        ("happy", "happy", "happy"), ("sad", "sadness", "sadness"), ("Surprised", "surprise", "fear"),
        ("ANGRY", "anger", "anger")]  # fmt: skip
    path.write_text("happy\nquietly furious\tanger\n")
    assert [(t.prompt, t.emotion, t.expected) for t in harness.read_prompts(path)][1] == (
        "quietly furious", "anger", "anger")  # free text is read by the `text` ablation
    path.write_text("happy\nquietly furious\n")
    with pytest.raises(UsageError, match=r"prompts.txt:2: the prompt 'quietly furious' needs the emotion") as info:
        harness.read_prompts(path)
    assert "prompt<TAB>emotion" in info.value.hint
    for shipped in ("emotion_words.tsv", "emotion_paraphrases.tsv"):
        targets = harness.read_prompts(harness.PROMPTS / shipped)
        assert {t.expected for t in targets} == set(EMOTIONS)
    path.write_text("happy\tbored\n")
    with pytest.raises(UsageError, match="'bored' is not one of the seven"):
        harness.read_prompts(path)
    with pytest.raises(UsageError, match="not found"):
        harness.read_prompts(tmp_path / "missing.txt")
    assert all(canonical_emotion(word) in EMOTIONS for word in EMOTION_ALIASES)


def test_views_and_intensities_parsing() -> None:
    views = harness.parse_views("0, 30,-30,photo,30")
    assert [(v.name, v.yaw) for v in views] == [("0", 0.0), ("30", 30.0), ("-30", -30.0), ("photo", None)]
    for bad in ("left", "", "120"):
        with pytest.raises(UsageError):
            harness.parse_views(bad)
    assert harness.parse_intensities("0.5,1,1.5,1") == (0.5, 1.0, 1.5)
    for bad in ("x", "", "-1"):
        with pytest.raises(UsageError):
            harness.parse_intensities(bad)


def test_render_landmarks_make_a_judge_observation() -> None:
    from sie3d.eval.judges.crops import judge_crop_box, load_rule

    rng = np.random.default_rng(0)
    landmarks = rng.uniform(50, 250, size=(468, 2)).astype(np.float32)
    obs = harness.landmark_observation(landmarks, (300, 300))
    assert obs.landmarks_px.shape == (478, 3) and obs.image_size == (300, 300)
    np.testing.assert_allclose(obs.landmarks_px[:468, :2], landmarks)
    np.testing.assert_allclose(obs.landmarks_px[468, :2], landmarks[[33, 133]].mean(0), atol=1e-4)  # right iris
    np.testing.assert_allclose(obs.landmarks_px[473, :2], landmarks[[263, 362]].mean(0), atol=1e-4)
    for rule in ("facex", "facenet"):
        assert judge_crop_box(obs, load_rule(rule)) == pytest.approx(judge_crop_box(landmarks, load_rule(rule)))
    with pytest.raises(ValueError, match="468"):
        harness.landmark_observation(landmarks[:100], (300, 300))


def test_identity_reference_pairs_on_a_known_case() -> None:
    """Three people with two photos each (orthogonal identities, slightly perturbed) and one person with one
    photo (left out: only people with two photos form the population)."""
    rng = np.random.default_rng(0)
    basis = np.eye(8)
    photos, embeddings = [], []
    for person in range(3):
        for label in ("neutral", "happy"):
            photos.append(LabelledPhoto(Path(f"p{person}_{label}.jpg"), f"p{person}", label))
            embeddings.append(basis[person] + 0.01 * rng.normal(size=8))
    photos.append(LabelledPhoto(Path("single.jpg"), "single", "neutral"))
    embeddings.append(basis[0])
    ref = identity_reference("toy", True, photos, np.stack(embeddings))
    assert len(ref.same) == 3 and len(ref.different) == 3  # 3 same-person pairs, C(3, 2) different pairs
    assert ref.same.min() > 0.99 and np.abs(ref.different).max() < 0.05
    assert ref.same_pairs[0] == ("p0_neutral.jpg", "p0_happy.jpg")
    assert np.abs(ref.different).max() >= ref.threshold >= ref.different.min()


# -- the harness end to end ----------------------------------------------------------------------------


def test_eval_cli_writes_the_full_report(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = run_cli("-q", "eval", "--limit", "2", "--intensities", "1", "--views", "0,photo", "-o", str(out),
                     env=ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("rows.csv", "rows.json", "references.json", "summary.md", "aggregate.json", "accuracy.png",
                 "identity.png"):  # fmt: skip
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    sheets = sorted(p.name for p in (out / "contact").iterdir())
    assert sheets == ["prototype_1_view_0_p1.png", "prototype_1_view_photo_p1.png"]

    data = json.loads((out / "rows.json").read_text())
    rows = data["rows"]
    assert len(rows) == 2 * 3 * 7 * 2  # photos x ablations (one intensity) x emotions x views
    with open(out / "rows.csv", newline="") as stream:
        reader = csv.DictReader(stream)
        assert tuple(reader.fieldnames) == report.ROW_COLUMNS
        assert len(list(reader)) == len(rows)
    assert {r["photo"] for r in rows} == {"london_001_neutral.jpg", "london_002_neutral.jpg"}
    for r in rows:
        probs = np.array([r[c] for c in report.PROBABILITY_COLUMNS])
        assert probs.sum() == pytest.approx(1.0, abs=1e-3)
        assert r["facex_top1"] == EMOTIONS[int(probs.argmax())]
        assert r["facex_correct"] == (r["facex_top1"] == r["expected"])
        assert -1.0 <= r["identity_facenet"] <= 1.0 and isinstance(r["identity_rank1"], bool)
    by = {(r["photo"], r["series"], r["emotion"], r["view"]): r for r in rows}
    for photo in ("london_001_neutral.jpg", "london_002_neutral.jpg"):
        for view in ("0", "photo"):
            # One rest avatar serves 'rest' and the neutral prototype; 'photo' is one image for every target.
            assert by[(photo, "rest", "anger", view)]["image"] == by[(photo, "prototype 1", "neutral", view)]["image"]
            assert len({by[(photo, "photo", e, view)]["image"] for e in EMOTIONS}) == 1
            assert len({by[(photo, "prototype 1", e, view)]["image"] for e in EMOTIONS}) == 7
            rest = by[(photo, "rest", "neutral", view)]
            assert rest["identity_facenet_delta"] == 0.0
            # The crops find the face: a frontal render of the person is far closer to them than strangers are.
            assert rest["identity_facenet"] > 0.5 and rest["identity_rank1"]

    summary = (out / "summary.md").read_text()
    assert "facex" in summary and "## Identity" in summary and "Expression transfer without identity loss" in summary
    assert re.search(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\] n=2 ", summary)  # per emotion: n = 2 photos
    assert re.search(r"\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\] n=\d+", summary)  # identity with interval
    assert "`sie3d eval --prototypes --views 0,photo --ablations photo,rest,prototype --intensities 1" in summary
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["identity_facenet"]["rest"]["0"]["n"] == 2  # one rest image per photo, however many targets
    assert agg["identity_facenet"]["prototype 1"]["photo"]["n"] == 2 * 7
    assert agg["accuracy"]["0"]["rest"]["all"]["n"] == 2 * 7 and set(agg["identity_delta"]) == {"prototype 1"}
    refs = json.loads((out / "references.json").read_text())
    facenet = next(r for r in refs["identity"] if r["judge"] == "facenet")
    assert facenet["held_out"] and facenet["same"]["n"] == 24 and facenet["different"]["n"] == 276
    assert facenet["same"]["mean"] > facenet["threshold"] > facenet["different"]["mean"]
    facex = refs["expression"][0]
    assert facex["judge"] == "facex" and facex["accuracy"]["london neutral"]["n"] == 24

    # Summary and plots are rebuilt from the raw files alone, identically.
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    for name in ("rows.json", "references.json"):
        shutil.copy(out / name, rebuilt / name)
    report.write_report(rebuilt)
    assert (rebuilt / "summary.md").read_text() == summary
    assert (rebuilt / "accuracy.png").is_file() and (rebuilt / "identity.png").is_file()


def test_eval_hair_puts_the_hair_on_every_series(tmp_path: Path) -> None:
    """`--hair`: the rest avatar wears the hair volume (as sie3d's avatars do by default), so its render and
    identity differ from the bare head's that the tables were measured on; the command in the report says so."""
    rows = {}
    for hair in ((), ("--hair",)):
        out = tmp_path / f"eval{len(hair)}"
        result = run_cli("-q", "eval", "--limit", "1", "--intensities", "1", "--views", "0", "--ablations", "rest",
                         *hair, "-o", str(out), env=ENV)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        rows[bool(hair)] = next(r for r in json.loads((out / "rows.json").read_text())["rows"] if r["series"] == "rest")
        assert ("--hair" in (out / "summary.md").read_text()) == bool(hair)
    assert rows[True]["identity_facenet"] != rows[False]["identity_facenet"]


def test_eval_cli_refuses_free_text_without_emotion_and_unknown_ablations(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("happy\na gleeful grin with raised eyebrows\n")
    out = tmp_path / "never"
    result = run_cli("eval", "--prompts", str(prompts), "-o", str(out), env=ENV)
    assert result.returncode == UsageError.exit_code and "Traceback" not in result.stderr
    assert "needs the emotion" in result.stderr and "prompts.txt:2" in result.stderr and not out.exists()
    result = run_cli("eval", "--ablations", "photo,nope", "-o", str(out), env=ENV)
    assert result.returncode == UsageError.exit_code and "unknown ablation 'nope'" in result.stderr
    assert not out.exists()
    result = run_cli("eval", "--light", "sun", "-o", str(out), env=ENV)
    assert result.returncode == UsageError.exit_code and "unknown light 'sun'" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
