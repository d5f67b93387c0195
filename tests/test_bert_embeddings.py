"""Tests for the numpy BERT sentence-embedding runtime (all-MiniLM-L6-v2)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from allmende.embeddings import BertEmbedder

from .conftest import packaged

pytestmark = pytest.mark.model

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"


@lru_cache(maxsize=1)
def _embedder() -> BertEmbedder:
    return BertEmbedder.from_directory(packaged("all-minilm-l6-v2"))


def test_dimensions_and_limits() -> None:
    emb = _embedder()
    assert emb.dimensions == 384
    assert emb.max_tokens == 256


def test_matches_reference_fixture() -> None:
    ref = json.loads(FIXTURE.read_text(encoding="utf-8"))
    vecs, tokens = _embedder().embed(ref["texts"])
    expected = np.asarray(ref["embeddings"], dtype=np.float32)
    assert vecs.shape == expected.shape
    assert float(np.abs(vecs - expected).max()) < 1e-4
    assert tokens == sum(ref["token_counts"])


def test_related_sentences_score_higher() -> None:
    pairs = [
        (
            "A man is playing a guitar.",
            "Someone plays an instrument.",
            "The stock market fell sharply today.",
        ),
        (
            "The cat sleeps on the sofa.",
            "A kitten is napping on the couch.",
            "Interest rates were raised by the central bank.",
        ),
        (
            "How do I bake bread at home?",
            "Recipe for homemade bread.",
            "The football match ended in a draw.",
        ),
        (
            "It is raining heavily outside.",
            "The weather is wet and stormy.",
            "She wrote a program in Python.",
        ),
    ]
    texts = [t for triple in pairs for t in triple]
    vecs, _ = _embedder().embed(texts)
    for i in range(len(pairs)):
        anchor, related, unrelated = vecs[3 * i : 3 * i + 3]
        assert float(anchor @ related) > float(anchor @ unrelated) + 0.2, pairs[i]


def test_unit_norm_shape_dtype() -> None:
    texts = ["one", "two words", "a somewhat longer sentence with more tokens in it"]
    vecs, tokens = _embedder().embed(texts)
    assert vecs.shape == (3, 384)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert tokens == sum(_embedder().count_tokens(texts))


def test_batching_matches_one_by_one() -> None:
    texts = ["short", "a medium length sentence here", "x " * 40, "", "Another one!"]
    batched, total = _embedder().embed(texts, batch_size=32)
    singles = [_embedder().embed([t]) for t in texts]
    np.testing.assert_allclose(batched, np.vstack([v for v, _ in singles]), atol=1e-5)
    assert total == sum(n for _, n in singles)
    small, _ = _embedder().embed(texts, batch_size=2)
    np.testing.assert_allclose(small, batched, atol=1e-5)


def test_long_input_is_truncated() -> None:
    emb = _embedder()
    long_text = "word " * 1000
    assert emb.count_tokens([long_text])[0] > emb.max_tokens
    vecs, tokens = emb.embed([long_text])
    assert tokens == emb.max_tokens
    assert vecs.shape == (1, 384)
    assert np.isfinite(vecs).all()
    # Text beyond the limit does not influence the result.
    more, _ = emb.embed([long_text + " completely different ending"])
    np.testing.assert_allclose(more, vecs, atol=1e-6)


def test_empty_string_and_empty_list() -> None:
    vecs, tokens = _embedder().embed([""])
    assert vecs.shape == (1, 384)
    assert tokens == 2  # [CLS] [SEP]
    np.testing.assert_allclose(np.linalg.norm(vecs), 1.0, atol=1e-5)
    none, zero = _embedder().embed([])
    assert none.shape == (0, 384)
    assert zero == 0


def test_count_tokens() -> None:
    emb = _embedder()
    assert emb.count_tokens(["", "hello", "hello world"]) == [2, 3, 4]
    assert emb.count_tokens([]) == []


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        BertEmbedder.from_directory(tmp_path / "nope")


def test_empty_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        BertEmbedder.from_directory(tmp_path)


def test_unsupported_config_raises(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}), encoding="utf-8")
    with pytest.raises(ValueError, match="model_type"):
        BertEmbedder.from_directory(tmp_path)
