"""Index batches cover every item exactly once per epoch; shuffling follows the generator."""

from __future__ import annotations

import pytest
import torch

from vaekit.data import binarize_batch, iterate_batches


@pytest.mark.parametrize(("num_items", "batch_size"), [(10, 3), (9, 3), (1, 5), (0, 4)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_index_once(num_items: int, batch_size: int, shuffle: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    batches = list(iterate_batches(num_items, batch_size, generator=generator, shuffle=shuffle))
    seen = torch.cat(batches) if batches else torch.empty(0, dtype=torch.int64)
    assert sorted(seen.tolist()) == list(range(num_items))
    assert all(len(b) == batch_size for b in batches[:-1])
    assert seen.dtype == torch.int64
    if not shuffle:
        assert seen.tolist() == list(range(num_items))


def test_drop_last_and_reproducible_shuffle() -> None:
    batches = list(iterate_batches(10, 3, generator=None, shuffle=False, drop_last=True))
    assert [len(b) for b in batches] == [3, 3, 3]

    def epoch(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return torch.cat(list(iterate_batches(50, 8, generator=generator, shuffle=True))).tolist()

    assert epoch(1) == epoch(1) and epoch(1) != epoch(2) and epoch(1) != list(range(50))


def test_gathering_with_indices() -> None:
    x = torch.arange(20.0).reshape(10, 2)
    generator = torch.Generator().manual_seed(0)
    rows = [x[idx] for idx in iterate_batches(10, 4, generator=generator, shuffle=True)]
    assert torch.equal(torch.cat(rows).sort(dim=0).values, x)


def test_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        list(iterate_batches(10, 0, generator=None, shuffle=False))


def test_binarize_batch_is_seeded_bernoulli() -> None:
    x = torch.full((2000,), 0.3)
    first = binarize_batch(x, torch.Generator().manual_seed(0))
    again = binarize_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(first, again) and set(first.unique().tolist()) <= {0.0, 1.0}
    assert abs(first.mean().item() - 0.3) < 0.04
