"""BERT sentence embeddings in pure numpy (float32), e.g. all-MiniLM-L6-v2.

Tokenization uses HF ``tokenizers``; weights come from ``model.safetensors``; pooling and
normalization follow the sentence-transformers ``modules.json`` of the model directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Tokenizer

F32 = npt.NDArray[np.float32]
_ST = "sentence_transformers.models."
_POOLING_MODES = ("mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"embedding model file missing: {path}")
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _layer_norm(x: F32, w: F32, b: F32, eps: float) -> F32:
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    return np.asarray(xc / np.sqrt(var + eps) * w + b, dtype=np.float32)


def _gelu(x: F32) -> F32:
    """Exact (erf) GELU; erf via Abramowitz-Stegun 7.1.26 (abs. error < 1.5e-7)."""
    z = np.abs(x) * np.float32(0.7071067811865476)
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.3275911) * z)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = np.sign(x) * (np.float32(1.0) - poly.astype(np.float32) * np.exp(-z * z))
    return np.asarray(np.float32(0.5) * x * (np.float32(1.0) + erf), dtype=np.float32)


@dataclass(frozen=True)
class _Layer:
    qkv_w: F32  # (hidden, 3*hidden), pre-transposed
    qkv_b: F32
    out_w: F32
    out_b: F32
    ln1_w: F32
    ln1_b: F32
    up_w: F32
    up_b: F32
    down_w: F32
    down_b: F32
    ln2_w: F32
    ln2_b: F32


class BertEmbedder:
    """Sentence-transformers BERT model (Transformer -> Pooling -> optional Normalize)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        weights: dict[str, F32],
        config: dict[str, Any],
        max_tokens: int,
        pooling: str,
        normalize: bool,
    ) -> None:
        self._tok = tokenizer
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        self._heads = int(config["num_attention_heads"])
        self.dimensions: int = int(config["hidden_size"])
        self.max_tokens: int = max_tokens
        self.pooling = pooling
        self.normalize = normalize
        p = "embeddings."
        self._word = weights[p + "word_embeddings.weight"]
        self._pos = weights[p + "position_embeddings.weight"]
        self._type0 = weights[p + "token_type_embeddings.weight"][0]
        self._eln = (weights[p + "LayerNorm.weight"], weights[p + "LayerNorm.bias"])
        self._layers: list[_Layer] = []
        for i in range(int(config["num_hidden_layers"])):

            def w(name: str, i: int = i) -> F32:
                return weights[f"encoder.layer.{i}.{name}"]

            qkv = ("query", "key", "value")
            self._layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(
                        np.concatenate([w(f"attention.self.{n}.weight") for n in qkv]).T
                    ),
                    qkv_b=np.concatenate([w(f"attention.self.{n}.bias") for n in qkv]),
                    out_w=np.ascontiguousarray(w("attention.output.dense.weight").T),
                    out_b=w("attention.output.dense.bias"),
                    ln1_w=w("attention.output.LayerNorm.weight"),
                    ln1_b=w("attention.output.LayerNorm.bias"),
                    up_w=np.ascontiguousarray(w("intermediate.dense.weight").T),
                    up_b=w("intermediate.dense.bias"),
                    down_w=np.ascontiguousarray(w("output.dense.weight").T),
                    down_b=w("output.dense.bias"),
                    ln2_w=w("output.LayerNorm.weight"),
                    ln2_b=w("output.LayerNorm.bias"),
                )
            )

    @classmethod
    def from_directory(cls, path: str | Path) -> BertEmbedder:
        """Load a sentence-transformers BERT model directory."""
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"embedding model directory not found: {root}")
        config = _read_json(root / "config.json")
        if config.get("model_type") != "bert":
            raise ValueError(f"unsupported model_type {config.get('model_type')!r} (need bert)")
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported hidden_act {config.get('hidden_act')!r}")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        if int(config["hidden_size"]) % int(config["num_attention_heads"]):
            raise ValueError("hidden_size is not divisible by num_attention_heads")

        modules = _read_json(root / "modules.json")
        types = [str(m.get("type", "")).removeprefix(_ST) for m in modules]
        if not types or types[0] != "Transformer" or "Pooling" not in types:
            raise ValueError(f"unsupported modules.json pipeline: {types}")
        if any(t not in ("Transformer", "Pooling", "Normalize") for t in types):
            raise ValueError(f"unsupported sentence-transformers module in {types}")
        pool_path = next(m["path"] for m in modules if str(m["type"]).endswith("Pooling"))
        pool_cfg = _read_json(root / pool_path / "config.json")
        modes = [
            k.removeprefix("pooling_mode_")
            for k, v in pool_cfg.items()
            if k.startswith("pooling_mode_") and v
        ]
        if len(modes) != 1 or modes[0] not in _POOLING_MODES:
            raise ValueError(f"unsupported pooling configuration: {modes}")

        max_tokens = int(config["max_position_embeddings"])
        sbert = root / "sentence_bert_config.json"
        if sbert.is_file():
            max_tokens = min(max_tokens, int(_read_json(sbert).get("max_seq_length", max_tokens)))

        tok_file = root / "tokenizer.json"
        weights_file = root / "model.safetensors"
        for f in (tok_file, weights_file):
            if not f.is_file():
                raise FileNotFoundError(f"embedding model file missing: {f}")
        tokenizer = Tokenizer.from_file(str(tok_file))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        raw = load_file(str(weights_file))
        weights = {
            k.removeprefix("bert."): v.astype(np.float32, copy=False)
            for k, v in raw.items()
            if v.dtype.kind == "f"
        }
        try:
            return cls(tokenizer, weights, config, max_tokens, modes[0], "Normalize" in types)
        except KeyError as exc:
            raise ValueError(f"model.safetensors lacks expected tensor {exc}") from None

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per input including special tokens, before truncation."""
        return [len(e.ids) for e in self._tok.encode_batch(texts)]

    def embed(self, texts: list[str], batch_size: int = 32) -> tuple[F32, int]:
        """Embed texts; returns ((n, dimensions) float32, total tokens after truncation)."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        m = self.max_tokens
        ids = [
            e.ids if len(e.ids) <= m else e.ids[: m - 1] + e.ids[-1:]
            for e in self._tok.encode_batch(texts)
        ]
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # less padding per batch
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            length = max(len(ids[i]) for i in idx)
            batch = np.zeros((len(idx), length), dtype=np.int64)
            mask = np.zeros((len(idx), length), dtype=np.float32)
            for row, i in enumerate(idx):
                batch[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1.0
            out[idx] = self._pool(self._encode(batch, mask), mask)
        if self.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))
        return out, sum(len(x) for x in ids)

    def _encode(self, ids: npt.NDArray[np.int64], mask: F32) -> F32:
        b, n = ids.shape
        h, d = self._heads, self.dimensions // self._heads
        x = (self._word[ids] + self._pos[:n] + self._type0).reshape(b * n, h * d)
        x = _layer_norm(x, *self._eln, self._eps)  # 2-D activations: one GEMM per projection
        bias = ((np.float32(1.0) - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(d))
        for ly in self._layers:
            qkv = (x @ ly.qkv_w + ly.qkv_b).reshape(b, n, 3, h, d).transpose(2, 0, 3, 1, 4)
            scores = (qkv[0] * scale) @ qkv[1].transpose(0, 1, 3, 2) + bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(b * n, h * d)
            x = _layer_norm(ctx @ ly.out_w + ly.out_b + x, ly.ln1_w, ly.ln1_b, self._eps)
            ff = _gelu(x @ ly.up_w + ly.up_b) @ ly.down_w + ly.down_b
            x = _layer_norm(ff + x, ly.ln2_w, ly.ln2_b, self._eps)
        return x.reshape(b, n, h * d)

    def _pool(self, x: F32, mask: F32) -> F32:
        if self.pooling == "cls_token":
            return x[:, 0]
        if self.pooling == "max_tokens":
            return np.asarray(
                np.where(mask[:, :, None] > 0, x, np.float32(-1e9)).max(axis=1), dtype=np.float32
            )
        summed = (x * mask[:, :, None]).sum(axis=1)
        count = np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        if self.pooling == "mean_sqrt_len_tokens":
            count = np.sqrt(count)
        return np.asarray(summed / count, dtype=np.float32)
