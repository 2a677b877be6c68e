"""The conditioning network: f(text embedding, identity features) -> expression, emotion, confidence.

The text decides an *edit* of the person's face and the person decides what it is applied to:

    coefficients = clip(keep_photo * photo_expression + keep_rest * rest_expression + add, 0, 1)

`keep_photo`, `keep_rest` (in [0, 1]) and `add` (in [-1, 1]) are predicted per shape from the fused
features, so "neutral" on a smiling photo returns the person's rest (keep_rest = 1), "smile more" builds
on the photo's own smile (keep_photo = 1, add > 0), "open mouth" sets the jaw and keeps everything else
at rest. The emotion head reads the fused features together with the resulting change from the rest;
the confidence head reads the text alone (is this a description of a face at all?).

Fusion (`ConditioningConfig.fusion`), chosen by the ablation in `sie3d.semantics.train`:
- ``film``: the identity features scale and shift the text features (feature-wise linear modulation);
- ``mlp``: text and identity features concatenated into a plain MLP;
- ``text``: no identity input at all (the edit cannot see the person; the ablation's lower bound).

Identity features (`identity_features`): the SFace embedding (128), ICT identity coefficients (100, /2),
the photo's expression (53) and the rest expression (53). The per-person corrections that the perceptual
refinement finds later (amortised refinement) are learned by fine-tuning this network with per-person
targets through `ConditioningNet.loss`, which takes targets and an optional weight per example.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sie3d.expressions import EMOTIONS
from sie3d.head.names import ICT_NAMES

N_SHAPES = len(ICT_NAMES)
TEXT_DIM = 384
SFACE_DIM = 128
N_IDENTITY = 100
IDENTITY_DIM = SFACE_DIM + N_IDENTITY + 2 * N_SHAPES
FUSIONS = ("film", "mlp", "text")
MAX_WORDS = 32  # word pieces the word-level branch reads ([CLS] and [SEP] included); prompts are shorter


@dataclass(frozen=True)
class ConditioningConfig:
    fusion: str = "film"
    hidden: int = 256
    dropout: float = 0.1
    words: bool = True  # the word-level branch (see `ConditioningNet`); False: the sentence embedding only
    word_width: int = 64

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion {self.fusion!r}: choose one of {FUSIONS}")


@dataclass
class ConditioningOutput:
    """Batched predictions; every tensor's first dimension is the batch."""

    coefficients: Tensor  # (B, 53) in [0, 1]
    keep_photo: Tensor  # (B, 53) in [0, 1]
    keep_rest: Tensor  # (B, 53) in [0, 1]
    add: Tensor  # (B, 53) in [-1, 1]
    emotion_logits: Tensor  # (B, 7) `EMOTIONS` order
    confidence: Tensor  # (B,) in [0, 1]
    raw: Tensor  # (B, 53) before clipping (training uses a leaky clip of it)

    @property
    def emotions(self) -> Tensor:
        return self.emotion_logits.softmax(-1)


def identity_features(sface: np.ndarray, identity: np.ndarray, photo_expression: np.ndarray,
                      rest_expression: np.ndarray) -> np.ndarray:
    """(…, 334) float32 identity features from (…, 128) SFace, (…, 100) ICT identity, (…, 53) photo and
    (…, 53) rest expressions."""
    parts = [np.asarray(sface, np.float32), np.asarray(identity, np.float32) / 2.0,
             np.asarray(photo_expression, np.float32), np.asarray(rest_expression, np.float32)]  # fmt: skip
    shapes = [p.shape[-1] for p in parts]
    if shapes != [SFACE_DIM, N_IDENTITY, N_SHAPES, N_SHAPES]:
        raise ValueError(f"identity features: expected last dims (128, 100, 53, 53), got {shapes}")
    return np.concatenate(parts, axis=-1)


def split_identity(features: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 334) features -> (photo expression (B, 53), rest expression (B, 53))."""
    photo = features[:, SFACE_DIM + N_IDENTITY : SFACE_DIM + N_IDENTITY + N_SHAPES]
    return photo, features[:, SFACE_DIM + N_IDENTITY + N_SHAPES :]


def _block(n_in: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.LayerNorm(n_out), nn.GELU(), nn.Dropout(dropout))


class WordBranch(nn.Module):
    """Reads the prompt's word pieces as MiniLM's frozen (static) word vectors, in order: one self-attention
    layer and attention pooling steered by the sentence embedding. The mean-pooled sentence embedding hardly
    separates "left" from "right" (cosine 0.97 between "raise the left/right eyebrow") or "smiling" from "not
    smiling" (0.81); single words and their order do."""

    def __init__(self, width: int, dropout: float, queries: int = 4) -> None:
        super().__init__()
        self.project = nn.Linear(TEXT_DIM, width)
        self.position = nn.Embedding(MAX_WORDS, width)
        self.layer = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=2 * width, dropout=0.0,
                                                batch_first=True)  # fmt: skip
        self.query = nn.Linear(TEXT_DIM, queries * width)
        self.queries = queries
        self.out_dim = queries * width

    def forward(self, sentence: Tensor, words: Words) -> Tensor:
        """(B, 384) sentence embeddings and their `Words` -> (B, queries * width)."""
        t = max(1, int(words.mask.sum(1).max()))  # the batch's longest prompt: padding beyond it is never read
        ids, mask = words.ids[:, :t], words.mask[:, :t]
        unique, inverse = torch.unique(ids, return_inverse=True)  # project each distinct word piece once
        x = self.project(words.table[unique])[inverse] + self.position.weight[:t]
        x = self.layer(x, src_key_padding_mask=~mask)
        q = self.query(sentence).view(len(ids), self.queries, -1)  # (B, Q, W)
        scores = (q @ x.transpose(1, 2)) / x.shape[-1] ** 0.5  # (B, Q, T)
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        return (scores.softmax(-1) @ x).reshape(len(ids), -1)


@dataclass(frozen=True)
class Words:
    """A batch of prompts as word pieces: ids (B, T) int64 and mask (B, T) bool (`TextEncoder.word_ids`),
    and the frozen (vocabulary, 384) table of MiniLM's input word vectors they index."""

    ids: Tensor
    mask: Tensor
    table: Tensor

    def __post_init__(self) -> None:
        if self.ids.shape != self.mask.shape or self.ids.shape[1] > MAX_WORDS or self.table.shape[1] != TEXT_DIM:
            raise ValueError(f"words: ids {tuple(self.ids.shape)} and mask {tuple(self.mask.shape)} must match with "
                             f"at most {MAX_WORDS} pieces; table (vocab, {TEXT_DIM}), got {tuple(self.table.shape)}")

    def select(self, rows) -> Words:
        return Words(self.ids[rows], self.mask[rows], self.table)


class ConditioningNet(nn.Module):
    def __init__(self, config: ConditioningConfig = ConditioningConfig()) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.words = WordBranch(config.word_width, config.dropout) if config.words else None
        self.text = _block(TEXT_DIM + (self.words.out_dim if self.words else 0), h, config.dropout)
        if config.fusion == "film":
            self.film = nn.Linear(IDENTITY_DIM, 2 * h)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
            self.trunk = _block(h, h, config.dropout)
        elif config.fusion == "mlp":
            self.trunk = _block(h + IDENTITY_DIM, h, config.dropout)
        else:
            self.trunk = _block(h, h, config.dropout)
        self.edit = nn.Linear(h, 3 * N_SHAPES)
        self.emotion = nn.Sequential(nn.Linear(h + N_SHAPES, h // 2), nn.GELU(), nn.Linear(h // 2, len(EMOTIONS)))
        self.confidence = nn.Linear(h, 1)

    def forward(self, text: Tensor, identity: Tensor, words: Words | None = None) -> ConditioningOutput:
        """`text` (B, 384) unit sentence embeddings, `identity` (B, 334) `identity_features`, `words` the
        prompts' word pieces (needed when `config.words`)."""
        if text.shape[-1] != TEXT_DIM or identity.shape[-1] != IDENTITY_DIM or text.shape[0] != identity.shape[0]:
            raise ValueError(f"expected (B, {TEXT_DIM}) and (B, {IDENTITY_DIM}), got {tuple(text.shape)} and "
                             f"{tuple(identity.shape)}")  # fmt: skip
        if self.words is not None:
            if words is None or len(words.ids) != len(text):
                raise ValueError("this network reads the prompts' word pieces: pass `words` for every text")
            t = self.text(torch.cat([text, self.words(text, words)], -1))
        else:
            t = self.text(text)
        if self.config.fusion == "film":
            gamma, beta = self.film(identity).chunk(2, dim=-1)
            h = self.trunk(t * (1 + gamma) + beta)
        elif self.config.fusion == "mlp":
            h = self.trunk(torch.cat([t, identity], -1))
        else:
            h = self.trunk(t)
        keep_photo, keep_rest, add = self.edit(h).split(N_SHAPES, dim=-1)
        keep_photo, keep_rest, add = keep_photo.sigmoid(), keep_rest.sigmoid(), add.tanh()
        photo, rest = split_identity(identity)
        if self.config.fusion == "text":  # the person is unknown: the edit is the whole expression
            photo, rest = torch.zeros_like(photo), torch.zeros_like(rest)
        raw = keep_photo * photo + keep_rest * rest + add
        coefficients = raw.clamp(0.0, 1.0)
        emotion_logits = self.emotion(torch.cat([h, coefficients - rest], -1))
        confidence = self.confidence(t).squeeze(-1).sigmoid()
        return ConditioningOutput(coefficients, keep_photo, keep_rest, add, emotion_logits, confidence, raw)

    def loss(self, out: ConditioningOutput, identity: Tensor, target: Tensor, emotion: Tensor, confidence: Tensor,
             recipe: tuple[Tensor, Tensor, Tensor] | None = None, weight: Tensor | None = None) -> dict[str, Tensor]:
        """Loss terms for a batch: `identity` (B, 334) the features the batch was run with, `target` (B, 53)
        coefficients, `emotion` (B, 7) distributions, `confidence`
        (B,) in {0, 1}, `recipe` the (keep_photo, keep_rest, add) that made the targets when known (a
        direct signal for the edit), `weight` (B,) per example (e.g. fine-tuning on refined targets)."""
        w = torch.ones(len(target)) if weight is None else weight
        leaky = out.coefficients + 0.05 * (out.raw - out.raw.detach().clamp(0, 1))  # gradient past the clip
        error = (leaky - target).abs()
        terms = {"coefficients": (error.mean(-1) * w).mean()}
        # The shapes where the target or the prediction moves away from the rest carry the request (a side, a
        # negated smile): averaged over all 53 they would weigh a few percent, so they get a term of their own.
        _, rest = split_identity(identity)
        moved = (((target - rest).abs() > 0.05) | ((out.coefficients.detach() - rest).abs() > 0.05)).float()
        terms["moved"] = ((error * moved).sum(-1) / moved.sum(-1).clamp_min(1.0) * w).mean()
        if recipe is not None and self.config.fusion != "text":
            a, b, d = recipe
            edit = (out.keep_photo - a).abs() + (out.keep_rest - b).abs() + (out.add - d).abs()
            terms["edit"] = 0.3 * (edit.mean(-1) * w).mean()
        log_p = F.log_softmax(out.emotion_logits, -1)
        terms["emotion"] = 0.2 * (-(emotion * log_p).sum(-1) * w).mean()
        terms["confidence"] = 0.1 * F.binary_cross_entropy(out.confidence, confidence)
        terms["total"] = sum(terms.values())
        return terms

    def config_json(self) -> dict:
        return asdict(self.config)
