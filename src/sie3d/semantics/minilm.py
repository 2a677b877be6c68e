"""all-MiniLM-L6-v2's network (a 6-layer BERT encoder, 384 wide) in plain PyTorch.

The frozen text model is a BERT encoder; building it with `transformers` costs seconds of imports per
process (4 s cold on the reference machine), longer than everything else a new sentence on a saved person
needs. This module is the same computation in ~80 lines of torch, reading the same ``model.safetensors``:
embeddings (word + position + token type, LayerNorm) -> 6 x [multi-head self-attention, residual,
LayerNorm, GELU feed-forward, residual, LayerNorm]. tests/test_text_encoder.py compares the encoder built on
it with sentence-transformers (the original runtime, on top of `transformers.BertModel`) on real prompts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class BertShape:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @staticmethod
    def read(config_json: Path) -> BertShape:
        data = json.loads(Path(config_json).read_text())
        if data.get("hidden_act", "gelu") != "gelu" or data.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{config_json}: only BERT with exact GELU and absolute positions is supported")
        return BertShape(**{k: data[k] for k in BertShape.__dataclass_fields__})


class _Layer(nn.Module):
    def __init__(self, shape: BertShape, device: torch.device | str | None = None) -> None:
        super().__init__()
        h, eps = shape.hidden_size, shape.layer_norm_eps
        self.heads = shape.num_attention_heads
        self.qkv = nn.Linear(h, 3 * h, device=device)
        self.attention_out = nn.Linear(h, h, device=device)
        self.attention_norm = nn.LayerNorm(h, eps=eps, device=device)
        self.up = nn.Linear(h, shape.intermediate_size, device=device)
        self.down = nn.Linear(shape.intermediate_size, h, device=device)
        self.out_norm = nn.LayerNorm(h, eps=eps, device=device)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(h // self.heads) + bias  # (B, heads, T, T)
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, h)
        x = self.attention_norm(x + self.attention_out(context))
        return self.out_norm(x + self.down(F.gelu(self.up(x))))


class MiniLM(nn.Module):
    """BERT encoder: token ids (B, T) + attention mask (B, T) -> last hidden states (B, T, 384)."""

    def __init__(self, shape: BertShape, device: torch.device | str | None = None) -> None:
        super().__init__()
        h = shape.hidden_size

        def embedding(rows: int) -> nn.Embedding:
            # given an empty table on a device: nn.Embedding's own random start on the meta device imports
            # torch._dynamo (0.9 s)
            empty = None if device is None else torch.empty(rows, h, device=device)
            return nn.Embedding(rows, h, _weight=empty, device=device)

        self.words = embedding(shape.vocab_size)
        self.positions = embedding(shape.max_position_embeddings)
        self.token_types = embedding(shape.type_vocab_size)
        self.embedding_norm = nn.LayerNorm(h, eps=shape.layer_norm_eps, device=device)
        self.layers = nn.ModuleList(_Layer(shape, device) for _ in range(shape.num_hidden_layers))

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.embedding_norm(self.words(ids) + self.positions(positions)[None] + self.token_types.weight[0])
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min  # padding gets no attention
        for layer in self.layers:
            x = layer(x, bias)
        return x

    @staticmethod
    def load(folder: Path) -> MiniLM:
        """Build from ``config.json`` and ``model.safetensors`` (Hugging Face BERT names) in `folder`. The layers
        are made on the meta device (no random initialisation: 0.1 s) and take the file's tensors as they are."""
        from safetensors.torch import load_file

        model = MiniLM(BertShape.read(folder / "config.json"), device="meta")
        weights = {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
        state = {"words.weight": weights["embeddings.word_embeddings.weight"],
                 "positions.weight": weights["embeddings.position_embeddings.weight"],
                 "token_types.weight": weights["embeddings.token_type_embeddings.weight"],
                 "embedding_norm.weight": weights["embeddings.LayerNorm.weight"],
                 "embedding_norm.bias": weights["embeddings.LayerNorm.bias"]}  # fmt: skip
        for i in range(len(model.layers)):
            p = f"encoder.layer.{i}."
            for kind in ("weight", "bias"):
                state[f"layers.{i}.qkv.{kind}"] = torch.cat(
                    [weights[f"{p}attention.self.{n}.{kind}"] for n in ("query", "key", "value")])
                state[f"layers.{i}.attention_out.{kind}"] = weights[f"{p}attention.output.dense.{kind}"]
                state[f"layers.{i}.attention_norm.{kind}"] = weights[f"{p}attention.output.LayerNorm.{kind}"]
                state[f"layers.{i}.up.{kind}"] = weights[f"{p}intermediate.dense.{kind}"]
                state[f"layers.{i}.down.{kind}"] = weights[f"{p}output.dense.{kind}"]
                state[f"layers.{i}.out_norm.{kind}"] = weights[f"{p}output.LayerNorm.{kind}"]
        model.load_state_dict(state, assign=True)  # strict: every meta tensor is replaced, none left over
        return model.eval().requires_grad_(False)

