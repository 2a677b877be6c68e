"""`sie3d animate`: script parsing, the eased timeline, the MP4 decoded back, and the GLB's animation through
the Khronos validator and three.js's AnimationMixer."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from sie3d.animation import Key, Timeline, parse_script
from sie3d.avatar import lid_target_names
from sie3d.errors import UsageError
from sie3d.export.rig import rig_names, rig_weights
from sie3d.head.eyelids import inbetween_weights
from sie3d.head.model import BLINKS
from sie3d.head.names import ICT_NAMES
from sie3d.visemes import VISEME_NAMES

from conftest import run_cli

SCRIPT = "neutral 0s; happy 1s; a wide open mouth 1.6s; neutral at 2 s"


def test_script_keys_and_times():
    assert parse_script(SCRIPT) == [Key("neutral", 0.0), Key("happy", 1.0), Key("a wide open mouth", 1.6),
                                    Key("neutral", 2.0)]  # fmt: skip
    assert parse_script("Photo 0s\n surprised but happy 2.5S;") == [Key("photo", 0.0), Key("surprised but happy", 2.5)]


@pytest.mark.parametrize(("script", "phrase"), [
    ("", "has no keys"),
    (" ; ;", "has no keys"),
    ("neutral 0s; happy", "entry 2 ('happy') is not 'KEY TIMEs'"),
    ("neutral 0s; happy 1", "entry 2 ('happy 1') is not 'KEY TIMEs'"),
    ("1s", "entry 1 ('1s') is not 'KEY TIMEs'"),
    ("neutral -1s; happy 1s", "entry 1 ('neutral -1s'): the time is negative"),
    ("neutral 0s; happy 2s; sad 1s", "entry 3 ('sad 1s'): 1s is not after the previous key (2s)"),
    ("neutral 0s; happy 0s", "0s is not after the previous key"),
    ("neutral 0s; happy 1000s", "1000s is longer than 600s"),
    ("neutral 0s; ha\x07ppy 1s", "entry 2"),
])  # fmt: skip
def test_script_errors_name_the_entry(script, phrase):
    with pytest.raises(UsageError) as caught:
        parse_script(script)
    assert phrase in caught.value.message and caught.value.hint


def test_timeline_eases_between_keys_and_holds_after():
    a, b = np.zeros(53, np.float32), np.zeros(53, np.float32)
    b[ICT_NAMES.index("jawOpen")] = 1.0
    line = Timeline((Key("neutral", 0.0), Key("open", 2.0), Key("neutral", 3.0)), np.stack([a, b, a]))
    jaw = line.at(np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 9.0]))[:, ICT_NAMES.index("jawOpen")]
    np.testing.assert_allclose(jaw, [0, 0.15625, 0.5, 0.84375, 1, 0.5, 0, 0], atol=1e-6)
    assert (np.diff(line.at(np.linspace(0, 2, 50))[:, ICT_NAMES.index("jawOpen")]) >= 0).all()


@pytest.fixture(scope="module")
def animated(faces, tmp_path_factory):
    out = tmp_path_factory.mktemp("animate") / "out"
    result = run_cli("animate", str(faces / "london_010_neutral.jpg"), "--script", SCRIPT, "--fps", "10", "--size",
                     "128", "--texture-size", "256", "-o", str(out), "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def _expected(timeline: dict, times: list[float]) -> np.ndarray:
    """(T, K) the GLB's morph weights at `times` for the timeline of timeline.json: each key's ICT coefficients
    as rig weights, the visemes at 0 and the blinks' in-between targets at their tents, smoothstep between keys
    (the rig's surface is linear in its weights, so this is the ICT timeline's surface)."""
    keys = timeline["keys"]
    coefficients = np.array([[k["coefficients"][n] for n in ICT_NAMES] for k in keys], np.float32)
    tents = inbetween_weights(torch.from_numpy(coefficients[:, BLINKS])).numpy().reshape(len(keys), -1)
    weights = np.concatenate([rig_weights(coefficients), np.zeros((len(keys), len(VISEME_NAMES)), np.float32),
                              tents], 1)  # fmt: skip
    line = Timeline(tuple(Key(k["label"], k["time_s"]) for k in keys), weights)
    return line.at(np.array(times))


def test_video_follows_the_timeline(animated):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(animated / "animation.mp4"))
    meta = next(reader)
    frames = np.stack([np.frombuffer(f, np.uint8).reshape(128, 128, 3) for f in reader]).astype(np.float64)
    assert meta["size"] == (128, 128) and meta["fps"] == 10 and meta["codec"] == "h264" and len(frames) == 21
    change = np.abs(frames - frames[0])[:, 56:104, 36:92].mean(axis=(1, 2, 3))  # around the mouth and cheeks
    assert change[20] < 3  # back to neutral: the same render, but for the video's compression (~1.3 levels)
    assert min(change[10], change[16]) > 3 * change[20]  # happy at 1 s, the open mouth at 1.6 s
    assert change[5] < change[10]  # eased in
    timeline = json.loads((animated / "timeline.json").read_text())
    assert [k["label"] for k in timeline["keys"]] == ["neutral", "happy", "a wide open mouth", "neutral"]
    assert timeline["fps"] == 10 and timeline["size"] == 128


def test_glb_animation_is_valid_and_plays_in_three_js(animated, node_packages):
    glb = animated / "avatar.glb"
    done = subprocess.run(["node", str(node_packages / "validate.js"), str(glb)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    report = json.loads(done.stdout)
    assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, report["issues"]["messages"]
    assert report["info"]["animationCount"] == 1
    times = [0.0, 0.25, 0.5, 1.0, 1.3, 1.6, 1.8, 2.0]
    done = subprocess.run(["node", str(node_packages / "play_animation.mjs"), str(glb), *map(str, times)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    played = json.loads(done.stdout)
    assert played["clips"][0]["duration"] == pytest.approx(2.0) and not played["warnings"]
    expected = _expected(json.loads((animated / "timeline.json").read_text()), times)
    targets = [*rig_names(), *VISEME_NAMES, *lid_target_names()]  # the visemes and the lids' after the rig
    assert all(names == targets for names in played["names"])
    for sample, want in zip(played["samples"], expected, strict=True):
        for influences in sample["influences"]:  # every primitive moves alike
            np.testing.assert_allclose(influences, want, atol=2e-4)
    jaw = [s["influences"][0][rig_names().index("jawOpen")] for s in played["samples"]]
    assert jaw[5] > jaw[3] + 0.2 and jaw[0] == pytest.approx(jaw[-1], abs=1e-4)  # the weights move over time


def test_glb_animation_plays_in_chromium(animated, node_packages, chromium):
    """The same GLB in a real browser: a page with three.js's GLTFLoader and an AnimationMixer driven by its
    render loop (requestAnimationFrame, WebGL drawing every frame) -- the weights follow the timeline."""
    options = {"glb": str(animated / "avatar.glb"), "chromium": str(chromium), "timeoutMs": 240000}
    done = subprocess.run(["node", str(node_packages / "play_animation_in_chromium.mjs"), json.dumps(options)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    played = json.loads(done.stdout)
    assert played["error"] is None and not played["consoleErrors"], played
    assert played["duration"] == pytest.approx(2.0)
    assert played["names"] == [*rig_names(), *VISEME_NAMES, *lid_target_names()]
    samples = played["samples"]
    assert len(samples) >= 5 and samples[-1]["time"] == pytest.approx(2.0)
    expected = _expected(json.loads((animated / "timeline.json").read_text()), [s["time"] for s in samples])
    for sample, want in zip(samples, expected, strict=True):
        np.testing.assert_allclose(sample["influences"], want, atol=2e-4)
    jaw = [s["influences"][rig_names().index("jawOpen")] for s in samples]
    assert max(jaw) - min(jaw) > 0.2  # the weights change over time


def test_bad_script_fails_before_anything_is_written(faces, tmp_path):
    out = tmp_path / "out"
    result = run_cli("animate", str(faces / "london_010_neutral.jpg"), "--script", "happy 1s; sad 0.5s", "-o",
                     str(out))  # fmt: skip
    assert result.returncode == UsageError.exit_code and "entry 2" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_turntable_turns_the_camera_once(happy, models):
    from sie3d.animation import frames

    line = Timeline((Key("neutral", 0.0), Key("photo", 2.0)), np.stack([happy.rest_expression, happy.rest_expression]))
    views = np.stack(list(frames(happy, models, line, fps=2, size=64, turntable=True))).astype(np.float64)
    assert len(views) == 5  # 0, 0.5, 1, 1.5, 2 s: 0, 90, 180, 270, 360 degrees
    assert np.abs(views[4] - views[0]).mean() < 0.5  # a full turn
    assert np.abs(views[2] - views[0]).mean() > 5  # the back of the head
    assert np.abs(views[1] - np.flip(views[3], axis=1)).mean() < np.abs(views[1] - views[3]).mean()  # profiles mirror
