"""The subset-fill packer against its invariants and against plain best-fit-decreasing (no model, no data)."""

import random

import pytest

from infimed.training.packing import PackingBudget, pack_best_fit_decreasing, pack_plain_best_fit_decreasing


def _vqa_like(n, seed):
    """Token lengths shaped like the benchmark pool: many short answers of 85-130 tokens behind 1-4 images of 64
    tokens, some long reports; the exact figures do not matter, only that many rows end with little room."""
    rng = random.Random(seed)
    lengths, images = [], []
    for _ in range(n):
        k = rng.choices([1, 2, 3, 4], weights=[70, 15, 10, 5])[0]
        text = rng.randint(20, 60) if rng.random() < 0.8 else rng.randint(150, 450)
        lengths.append(64 * k + text)
        images.append(k)
    return lengths, images


def _check_invariants(lengths, images, budget, result):
    skipped = set(result.too_long) | set(result.too_many_images)
    placed = [i for row in result.rows for i in row]
    assert sorted(placed) == sorted(set(range(len(lengths))) - skipped)  # every sample in exactly one place
    assert all(row for row in result.rows)
    for row in result.rows:
        assert sum(lengths[i] for i in row) <= budget.max_tokens
        if budget.max_images is not None:
            assert sum(images[i] for i in row) <= budget.max_images
    assert result.num_tokens == sum(lengths[i] for i in placed)
    assert result.num_images == sum(images[i] for i in placed)
    assert set(result.too_long) == {i for i, n in enumerate(lengths) if n > budget.max_tokens or n < 1}


@pytest.mark.parametrize("budget", [PackingBudget(768), PackingBudget(768, 6), PackingBudget(300, 3),
                                    PackingBudget(2048), PackingBudget(64)])
@pytest.mark.parametrize("seed", [0, 1])
def test_invariants_on_random_pools(budget, seed):
    rng = random.Random(seed)
    lengths = [rng.choice([rng.randint(0, 40), rng.randint(60, 900)]) for _ in range(700)]
    images = [rng.randint(0, 8) for _ in range(700)]
    result = pack_best_fit_decreasing(lengths, images, budget, seed=seed)
    _check_invariants(lengths, images, budget, result)
    if budget.max_images is not None:
        assert set(result.too_many_images) == {
            i for i, k in enumerate(images) if k > budget.max_images and 1 <= lengths[i] <= budget.max_tokens}


def test_edge_cases():
    assert pack_best_fit_decreasing([], [], PackingBudget(8)).rows == []
    everything_too_long = pack_best_fit_decreasing([9, 10], None, PackingBudget(8))
    assert everything_too_long.rows == [] and everything_too_long.too_long == [0, 1]
    # zero-image samples still fill a row whose image room is spent
    result = pack_best_fit_decreasing([4, 2, 2], [2, 0, 0], PackingBudget(8, 2))
    assert [sorted(row) for row in result.rows] == [[0, 1, 2]]


def test_deterministic_per_seed_and_seed_matters():
    lengths, images = _vqa_like(1500, seed=3)
    budget = PackingBudget(768, 8)
    a = pack_best_fit_decreasing(lengths, images, budget, seed=5)
    b = pack_best_fit_decreasing(list(lengths), list(images), budget, seed=5)
    c = pack_best_fit_decreasing(lengths, images, budget, seed=6)
    assert a.rows == b.rows and a.rows != c.rows


@pytest.mark.parametrize("budget", [PackingBudget(768), PackingBudget(1024), PackingBudget(768, 8),
                                    PackingBudget(2048, 16)])
def test_fills_at_least_as_well_as_plain_best_fit(budget):
    lengths, images = _vqa_like(2000, seed=11)
    plain = pack_plain_best_fit_decreasing(lengths, images, budget, seed=0)
    subset = pack_best_fit_decreasing(lengths, images, budget, seed=0)
    _check_invariants(lengths, images, budget, plain)
    _check_invariants(lengths, images, budget, subset)
    assert len(subset.rows) <= len(plain.rows)
    assert subset.efficiency >= plain.efficiency


def test_rows_left_just_under_the_shortest_sample_are_filled():
    # Plain best fit closes most rows with a room below the shortest sample (85 tokens here); the subset fill
    # chooses the samples that leave no such room, close to the bound of ceil(tokens / row length) rows.
    lengths, images = _vqa_like(2000, seed=12)
    budget = PackingBudget(768)
    plain = pack_plain_best_fit_decreasing(lengths, images, budget, seed=0)
    subset = pack_best_fit_decreasing(lengths, images, budget, seed=0)
    bound_rows = -(-sum(lengths) // 768)
    assert len(subset.rows) <= bound_rows + 0.01 * bound_rows < len(plain.rows)
