"""Length-aware batches of the local model: little padding, same vectors."""

from __future__ import annotations

import random

import numpy as np

from agent33.memory.embeddings import BATCH_COST_TOKENS, batches, local_embedder


def _padded(groups: list[list[int]], lengths: list[int]) -> int:
    return sum(len(group) * max(lengths[i] for i in group) for group in groups)


def test_batches_cover_every_text_once_in_order_and_respect_the_size() -> None:
    rng = random.Random(7)
    lengths = [rng.randint(5, 256) for _ in range(500)]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups = batches(order, lengths, 32)
    assert [i for group in groups for i in group] == order
    assert all(0 < len(group) <= 32 for group in groups)


def test_a_short_mixed_list_is_cut_where_lengths_jump() -> None:
    lengths = [10] * 20 + [200] * 5
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups = batches(order, lengths, 32)
    assert [len(group) for group in groups] == [20, 5]
    assert _padded(groups, lengths) == sum(lengths), "no padding at all"


def test_padding_stays_small_for_a_realistic_pool() -> None:
    """184 spread-out chunk lengths (a 16-document ingest batch): fixed batches of 32 pad
    23%; cut batches pad about half that, three extra calls included."""
    rng = np.random.default_rng(3)
    lengths = [int(x) for x in np.clip(rng.gamma(4.0, 21.0, size=184), 8, 256)]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    fixed = [order[i : i + 32] for i in range(0, len(order), 32)]
    cut = batches(order, lengths, 32)
    real = sum(lengths)
    calls = len(cut) - len(fixed)
    assert _padded(cut, lengths) + calls * BATCH_COST_TOKENS < _padded(fixed, lengths)
    assert _padded(cut, lengths) - real < 0.5 * (_padded(fixed, lengths) - real)


def test_vectors_do_not_depend_on_the_batch_a_text_lands_in() -> None:
    texts = ["short one", "a somewhat longer sentence about harbour cranes and their cables"]
    texts += [" ".join(["word"] * n) for n in (3, 40, 90)]
    together = local_embedder().embed(texts)
    alone = np.stack([local_embedder().embed([text])[0] for text in texts])
    assert float(np.min(np.sum(together * alone, axis=1))) > 0.999
