"""all-MiniLM-L6-v2 sentence and token embeddings (384-d), loaded offline from the `minilm` asset.

The recipe is the one the model folder itself declares for sentence-transformers (``modules.json``:
Transformer -> Pooling -> Normalize; ``1_Pooling/config.json``: mean over tokens only): BERT's last hidden
states averaged over the attention mask -- [CLS] and [SEP] included, padding excluded -- then L2-normalised.
`TextEncoder` checks those files before it trusts the recipe, and tests/test_text_encoder.py compares it with
sentence-transformers itself.

Nothing here can reach the network or changes the process: the tokenizer is read from ``tokenizer.json`` with
`tokenizers`, the network is sie3d's own plain-PyTorch BERT (`sie3d.semantics.minilm`) built from
``config.json`` with its weights read from ``model.safetensors`` with `safetensors`. No hub code path runs, so
no offline switch or environment variable is needed, and no `transformers` import (4 s cold) is paid: a new
sentence on a saved person must take seconds. The port is compared with sentence-transformers in the tests.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sie3d.assets.registry import asset_folder
from sie3d.errors import AssetError, UsageError

log = logging.getLogger(__name__)

ASSET = "minilm"
# What the folder must declare for the recipe above to be the model's own.
_MODULES = (
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
)
_POOLING = {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False}


@dataclass(frozen=True)
class EncoderConfig:
    """How `TextEncoder` reads text.

    max_tokens: the window in word pieces, [CLS] and [SEP] included; longer text is cut (`check_text` cuts it
        at a word boundary first and says so). 128 because all-MiniLM-L6-v2 was fine-tuned on sequences of
        128 word pieces (its model card); the folder's own hard limit is 256 (``sentence_bert_config.json``),
        but positions past 128 were never trained for similarity. 128 pieces are about 90 English words --
        several sentences, far more than an expression needs.
    batch_size: texts per forward pass. Texts are sorted by length first, so a batch carries little padding.
    """

    max_tokens: int = 128
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.max_tokens < 3:
            raise UsageError(f"max_tokens={self.max_tokens} leaves no room for text",
                             "use at least 3 ([CLS], one word piece, [SEP]); the default is 128")
        if self.batch_size < 1:
            raise UsageError(f"batch_size={self.batch_size} must be at least 1", "the default is 32")


def _read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AssetError(f"cannot read {path}: {exc}", f"run `sie3d assets fetch {ASSET}`") from None


def _model_window(folder: Path) -> int:
    """Check that the folder declares mean pooling + normalisation; return its max_seq_length (word pieces)."""
    modules = [m.get("type") for m in _read_json(folder / "modules.json")]
    pooling = _read_json(folder / "1_Pooling" / "config.json")
    if tuple(modules) != _MODULES or any(pooling.get(k) != v for k, v in _POOLING.items()):
        raise AssetError(
            f"the text model in {folder} is not Transformer + mean pooling + Normalize (modules {modules}, "
            f"pooling {pooling})",
            "the manifest and the package disagree; report this as a bug",
        )
    return int(_read_json(folder / "sentence_bert_config.json")["max_seq_length"])


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string: pass [text]")
    texts = list(texts)
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must all be str, got {', '.join(sorted(set(bad)))}")
    return texts


class TextEncoder:
    """Frozen all-MiniLM-L6-v2 on `device` (CPU by default).

    `encode` gives one unit vector per text, `encode_tokens` the per-token states it is pooled from, and
    `count_tokens` the length a text would have without the window. Results do not depend on how texts are
    batched beyond float rounding (~1e-6), and the same call on the same machine repeats exactly.
    Thread count is the caller's business (``torch.set_num_threads`` is process-wide; this class never sets it).
    """

    dim = 384

    def __init__(self, config: EncoderConfig = EncoderConfig(), device: str | torch.device = "cpu") -> None:
        start = time.perf_counter()
        from tokenizers import Tokenizer

        from sie3d.semantics.minilm import BertShape, MiniLM

        folder = asset_folder(ASSET)
        window = _model_window(folder)
        if config.max_tokens > window:
            raise UsageError(f"max_tokens={config.max_tokens} exceeds the text model's window of {window}",
                             f"use at most {window} (the default is {EncoderConfig.max_tokens})")
        self.config = config
        self.device = torch.device(device)

        # tokenizer.json ships with fixed padding and truncation at 128: both are replaced explicitly.
        self._counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=config.max_tokens)
        self._tokenizer.no_padding()  # batches are padded here, to their own longest text

        shape = BertShape.read(folder / "config.json")
        if shape.hidden_size != self.dim:
            raise AssetError(f"the text model in {folder} has width {shape.hidden_size}, not {self.dim}",
                             "the manifest and the package disagree; report this as a bug")
        try:
            model = MiniLM.load(folder)
        except (KeyError, RuntimeError) as exc:
            raise AssetError(f"the text model weights do not fit BERT: {exc}",
                             f"run `sie3d assets verify`, then `sie3d assets fetch {ASSET}`") from None
        self._model = model.to(self.device)
        self._pad_id = self._tokenizer.token_to_id("[PAD]")
        self.load_seconds = time.perf_counter() - start
        log.debug("text encoder ready in %.2f s (window %d, %s)", self.load_seconds, config.max_tokens, self.device)

    # -- public API ------------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Word pieces `text` takes, [CLS] and [SEP] included, before any cut to ``config.max_tokens``."""
        (text,) = _check_texts([text])
        return len(self._counter.encode(text).ids)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings, (N, 384) float32, unit L2 norm; row i belongs to texts[i]."""
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for rows, states, mask in self._batches(texts):
            weights = mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
            mean = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # (B, 384)
            out[rows] = F.normalize(mean, p=2, dim=1).cpu().numpy()
        return out

    def word_ids(self, texts: Sequence[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Word-piece ids (N, length) int64 ([CLS] first, [PAD] after the end, cut at `length`) and their mask
        (N, length) bool: what the conditioning network's word branch reads (rows of `word_table`)."""
        texts = _check_texts(texts)
        ids = torch.full((len(texts), length), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), length), dtype=torch.bool)
        for row, encoding in enumerate(self._tokenizer.encode_batch(texts)):
            piece = encoding.ids[:length]
            ids[row, : len(piece)] = torch.tensor(piece)
            mask[row, : len(piece)] = True
        return ids, mask

    @property
    def word_table(self) -> torch.Tensor:
        """(vocabulary, 384) the model's static input word vectors (the frozen table itself, not a copy)."""
        return self._model.words.weight

    def encode_tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per-token last hidden states and their mask.

        Returns ``states`` (N, T, 384) float32 and ``mask`` (N, T) bool, T = the longest text's length in word
        pieces after the cut to ``config.max_tokens``. Position 0 is [CLS], the last True position [SEP];
        positions past a text's end are False in `mask` and zero in `states`. ``encode`` is exactly the
        masked mean of these states, L2-normalised.
        """
        texts = _check_texts(texts)
        encodings = self._tokenizer.encode_batch(texts)
        width = max((len(e.ids) for e in encodings), default=0)
        states_out = np.zeros((len(texts), width, self.dim), np.float32)
        mask_out = np.zeros((len(texts), width), bool)
        for rows, states, mask in self._batches(texts, encodings):
            length = states.shape[1]
            states_out[rows, :length] = (states * mask.unsqueeze(-1)).cpu().numpy()
            mask_out[rows, :length] = mask.cpu().numpy()
        return states_out, mask_out

    # -- internals -------------------------------------------------------------------------------------

    def _batches(self, texts: list[str], encodings: list | None = None):
        """Yield (row indices, states (B, T, 384), mask (B, T) bool) per batch, texts sorted by length."""
        encodings = self._tokenizer.encode_batch(texts) if encodings is None else encodings
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        for start in range(0, len(order), self.config.batch_size):
            rows = order[start:start + self.config.batch_size]
            length = max(len(encodings[i].ids) for i in rows)
            ids = torch.full((len(rows), length), self._pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.bool)
            for j, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[j, :n] = torch.tensor(encodings[i].ids)
                mask[j, :n] = True
            ids, mask = ids.to(self.device), mask.to(self.device)
            with torch.inference_mode():
                states = self._model(ids, mask)
            yield np.asarray(rows), states.float(), mask
