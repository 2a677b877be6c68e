"""The text encoder: all-MiniLM-L6-v2 from the `minilm` asset, compared with sentence-transformers itself, and
loaded with the network blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sie3d.errors import UsageError
from sie3d.semantics.encoder import EncoderConfig, TextEncoder

from conftest import REPO

TEXTS = [
    "happy",
    "a gleeful grin with raised eyebrows",
    "A TIRED old man, smiling faintly -- after a long day!",
    "Ünïcödé café: 微笑 😀",
    "",
    " ".join(["very"] * 40) + " angry",
]
LONG = " ".join(f"word{i} smiles broadly while frowning" for i in range(60))  # ~400 word pieces


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers loading the same folder: the model's own reference implementation."""
    from sentence_transformers import SentenceTransformer

    from sie3d.assets.registry import asset_folder

    return SentenceTransformer(str(asset_folder("minilm")), device="cpu", local_files_only=True)


def test_sentence_embeddings_match_sentence_transformers(text_encoder, reference):
    ours = text_encoder.encode(TEXTS)
    theirs = reference.encode(TEXTS, convert_to_numpy=True, batch_size=4)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=2e-6)


def test_token_states_match_sentence_transformers(text_encoder, reference):
    states, mask = text_encoder.encode_tokens(TEXTS)
    theirs = reference.encode(TEXTS, output_value="token_embeddings", convert_to_numpy=True)
    assert states.shape[:2] == mask.shape and mask.dtype == bool and states.shape[2] == 384
    for i, expected in enumerate(theirs):
        n = int(mask[i].sum())
        assert n == len(expected) == text_encoder.count_tokens(TEXTS[i])
        assert mask[i, :n].all() and not mask[i, n:].any() and not states[i, n:].any()
        np.testing.assert_allclose(states[i, :n], np.asarray(expected), atol=2e-5)
    # encode() is exactly the masked mean of encode_tokens(), normalised
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(pooled, text_encoder.encode(TEXTS), atol=2e-6)


def test_window_of_256_matches_sentence_transformers_on_long_text(reference):
    """sentence-transformers cuts at the folder's 256; with the same window the results agree past 128."""
    wide = TextEncoder(EncoderConfig(max_tokens=256))
    np.testing.assert_allclose(wide.encode([LONG]), reference.encode([LONG], convert_to_numpy=True), atol=2e-6)


def test_long_text_is_cut_to_the_window(text_encoder):
    assert text_encoder.count_tokens(LONG) > 256
    states, mask = text_encoder.encode_tokens([LONG, "smile"])
    assert mask.shape == (2, 128) and mask[0].all() and mask[1].sum() == 3
    assert text_encoder.count_tokens("smile") == 3  # [CLS] smile [SEP]


def test_known_properties(text_encoder):
    happy, joyful, table = text_encoder.encode(["happy", "joyful", "table"])
    assert happy @ joyful > happy @ table + 0.3
    batch = text_encoder.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-6)
    single = np.stack([text_encoder.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(single, batch, atol=1e-5)  # padding with others changes nothing but rounding
    assert np.array_equal(text_encoder.encode(TEXTS), batch)  # the same call repeats exactly
    order = [3, 0, 5, 1, 4, 2]
    np.testing.assert_allclose(text_encoder.encode([TEXTS[i] for i in order]), batch[order], atol=1e-5)
    assert text_encoder.encode([]).shape == (0, 384)


def test_wrong_inputs_raise(text_encoder):
    with pytest.raises(TypeError, match="not one string"):
        text_encoder.encode("happy")
    with pytest.raises(TypeError, match="must all be str"):
        text_encoder.encode(["happy", 3])
    with pytest.raises(UsageError, match="no room"):
        EncoderConfig(max_tokens=2)
    with pytest.raises(UsageError, match="batch_size"):
        EncoderConfig(batch_size=0)
    with pytest.raises(UsageError, match="window of 256"):
        TextEncoder(EncoderConfig(max_tokens=300))


def test_small_batches_give_the_same_result(text_encoder):
    small = TextEncoder(EncoderConfig(batch_size=2))
    np.testing.assert_allclose(small.encode(TEXTS), text_encoder.encode(TEXTS), atol=1e-5)


OFFLINE_SCRIPT = textwrap.dedent("""
    import json, os, socket, sys

    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    before = dict(os.environ)
    from sie3d.semantics.encoder import TextEncoder
    from sie3d.semantics.text import check_text

    encoder = TextEncoder()
    checked = check_text("ein fröhliches Lächeln", encoder_tokens=encoder.count_tokens)
    vector = encoder.encode(["a gleeful grin with raised eyebrows"])[0]
    print(json.dumps({"vector": vector.tolist(), "language": checked.language, "dynamo": "torch._dynamo" in sys.modules,
                      "env_changed": sorted(set(os.environ.items()) ^ set(before.items()))}))
""")


def test_loads_and_encodes_with_the_network_blocked(text_encoder):
    """A fresh process (nothing cached), every socket connection and DNS lookup refused, no HF_* offline switch:
    the encoder and the language check still work, and neither changes the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["SIE3D_OFFLINE"] = "1"  # never run `pip download` for a missing asset either
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["env_changed"] == [] and result["language"] == "de"
    assert not result["dynamo"]  # the encoder is built on the meta device without importing torch._dynamo (1 s)
    expected = text_encoder.encode(["a gleeful grin with raised eyebrows"])[0]
    np.testing.assert_allclose(np.asarray(result["vector"], np.float32), expected, atol=1e-6)
