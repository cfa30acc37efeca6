"""The vector data set: real embeddings of generated sentences, held-out queries, and 100k
synthetic chunk vectors on the model's manifold; exact top-k by brute force."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent33.memory.embeddings import LocalMiniLM, Vectors
from benchmarks.vectors import DIMENSION, SEED
from benchmarks.vectors.vocabulary import sentences

BASE_SENTENCES = 4000
QUERIES = 200
SYNTHETIC_CHUNKS = 100_000
CROSS_TOPIC = 0.15

# --- the vector data set -----------------------------------------------------------------------

Indices = npt.NDArray[np.int64]


@dataclass
class Dataset:
    """Base sentences, held-out queries and the synthetic chunks made from the base."""

    base_texts: list[str]
    base: Vectors
    query_texts: list[str]
    queries: Vectors
    vectors: Vectors  # SYNTHETIC_CHUNKS rows
    parts: Indices  # SYNTHETIC_CHUNKS x 3 base indices; -1 where a chunk mixes only 2
    token_counts: Indices
    manifold_cos: float  # real chunk vs the mixture of its sentences
    noise: float  # norm of the added noise (the measured residual)
    embed_seconds: float

    def content(self, row: int) -> str:
        return " ".join(self.base_texts[i] for i in self.parts[row] if i >= 0)


def _token_counts(texts: Sequence[str]) -> Indices:
    from agent33.memory.tokenizer import minilm_tokenizer

    encodings = minilm_tokenizer().encode_batch(list(texts), add_special_tokens=False)
    return np.array([len(e.ids) for e in encodings], dtype=np.int64)


def _topic_picks(rng: np.random.Generator, labels: Indices, topic: Indices, width: int) -> Indices:
    """`width` random base indices per row, all from that row's topic."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    offsets = (rng.random((len(topic), width)) * counts[topic][:, None]).astype(np.int64)
    return np.asarray(order[starts[topic][:, None] + offsets], dtype=np.int64)


def _calibrate(
    embedder: LocalMiniLM,
    rng: np.random.Generator,
    texts: list[str],
    base: Vectors,
    labels: Indices,
    tokens: Indices,
) -> tuple[float, float]:
    """Embed 300 real 2-3 sentence chunks; (mean cosine to the token-weighted mixture of their
    sentences' embeddings, mean norm of the residual orthogonal to that mixture)."""
    from agent33.memory.embeddings import normalise

    count = 300
    picks = _topic_picks(rng, labels, rng.integers(0, labels.max() + 1, size=count), 3)
    sizes = rng.integers(2, 4, size=count)
    chunks = [" ".join(texts[i] for i in picks[n, : sizes[n]]) for n in range(count)]
    real = embedder.embed(chunks)
    weights = tokens[picks].astype(np.float32)
    weights[sizes == 2, 2] = 0.0
    mixed = normalise(np.einsum("nk,nkd->nd", weights, base[picks]))
    cosine = np.sum(real * mixed, axis=1)
    residual = np.linalg.norm(real - mixed * cosine[:, None], axis=1)
    return float(cosine.mean()), float(residual.mean())


def build_dataset(embedder: LocalMiniLM) -> Dataset:
    from agent33.memory.embeddings import normalise

    rng = np.random.default_rng(SEED)
    texts, label_list = sentences(BASE_SENTENCES + QUERIES, SEED)
    held_out = np.zeros(len(texts), dtype=bool)
    held_out[rng.choice(len(texts), QUERIES, replace=False)] = True
    started = time.perf_counter()
    embedded = embedder.embed(texts)
    embed_seconds = time.perf_counter() - started
    base_texts = [t for t, out in zip(texts, held_out, strict=True) if not out]
    base = embedded[~held_out]
    labels = np.asarray(label_list, dtype=np.int64)[~held_out]
    tokens = _token_counts(base_texts)
    manifold_cos, residual = _calibrate(embedder, rng, base_texts, base, labels, tokens)

    topic = rng.integers(0, labels.max() + 1, size=SYNTHETIC_CHUNKS)
    parts = _topic_picks(rng, labels, topic, 3)
    cross = rng.random(SYNTHETIC_CHUNKS) < CROSS_TOPIC
    parts[cross, 0] = rng.integers(0, len(base), size=int(cross.sum()))
    pairs = rng.random(SYNTHETIC_CHUNKS) < 0.5
    weights = rng.gamma(2.0, size=(SYNTHETIC_CHUNKS, 3)).astype(np.float32)  # Dirichlet(2)
    weights[pairs, 2] = 0.0
    parts[pairs, 2] = -1
    sigma = residual / np.sqrt(DIMENSION)
    vectors = np.empty((SYNTHETIC_CHUNKS, DIMENSION), dtype=np.float32)
    for start in range(0, SYNTHETIC_CHUNKS, 10_000):
        rows = slice(start, start + 10_000)
        mixed = normalise(np.einsum("nk,nkd->nd", weights[rows], base[np.maximum(parts[rows], 0)]))
        noise = rng.standard_normal(mixed.shape, dtype=np.float32) * np.float32(sigma)
        vectors[rows] = normalise(mixed + noise)
    token_counts = np.where(parts >= 0, tokens[np.maximum(parts, 0)], 0).sum(axis=1) + 2
    return Dataset(
        base_texts=base_texts,
        base=base,
        query_texts=[t for t, out in zip(texts, held_out, strict=True) if out],
        queries=embedded[held_out],
        vectors=vectors,
        parts=parts,
        token_counts=np.asarray(token_counts, dtype=np.int64),
        manifold_cos=manifold_cos,
        noise=residual,
        embed_seconds=embed_seconds,
    )


def exact_top_k(vectors: Vectors, queries: Vectors, k: int) -> Indices:
    """Row indices of the k most similar vectors per query (brute force, descending)."""
    scores = queries @ vectors.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.asarray(np.take_along_axis(top, order, axis=1), dtype=np.int64)
