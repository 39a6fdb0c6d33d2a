"""Best-fit-decreasing packer and packed collator, on hand-built samples (no model)."""

import random

import pytest
import torch
from PIL import Image

from infimed.training.collator import PACKING_STATS_KEY, DataCollatorForPackedVisionLanguageModeling
from infimed.training.packing import PackingBudget, pack_best_fit_decreasing


def _random_lengths(n, seed):
    rng = random.Random(seed)
    lengths = [rng.choice([rng.randint(5, 40), rng.randint(60, 200)]) for _ in range(n)]
    images = [rng.randint(0, 4) for _ in range(n)]
    return lengths, images


def test_both_budgets_respected_and_every_sample_placed_once():
    lengths, images = _random_lengths(300, seed=0)
    lengths[7] = 500  # over the token budget
    images[11] = 9  # over the image budget
    budget = PackingBudget(max_tokens=256, max_images=5)
    result = pack_best_fit_decreasing(lengths, images, budget, seed=3)
    assert result.too_long == [7] and result.too_many_images == [11]
    placed = sorted(i for row in result.rows for i in row)
    assert placed == sorted(set(range(300)) - {7, 11})
    for row in result.rows:
        assert sum(lengths[i] for i in row) <= 256
        assert sum(images[i] for i in row) <= 5
    assert result.num_tokens == sum(lengths[i] for i in placed)


def test_image_budget_binds_when_tokens_would_allow_more():
    # 10 one-token samples with 1 image each: the token budget alone would take them all in one row.
    result = pack_best_fit_decreasing([1] * 10, [1] * 10, PackingBudget(max_tokens=100, max_images=3), seed=0)
    assert sorted(len(r) for r in result.rows) == [1, 3, 3, 3]
    unbounded = pack_best_fit_decreasing([1] * 10, [1] * 10, PackingBudget(max_tokens=100), seed=0)
    assert len(unbounded.rows) == 1


def test_best_fit_is_tight_on_a_known_case():
    result = pack_best_fit_decreasing([7, 3, 5, 2, 6], [1, 0, 2, 0, 1], PackingBudget(10, 2), seed=0)
    assert sorted(sorted(r) for r in result.rows) == [[0, 1], [2], [3, 4]]
    # a lower bound on rows is ceil(total / budget); a mixed medical-VQA-like length mix packs close to it
    lengths, images = _random_lengths(2000, seed=1)
    result = pack_best_fit_decreasing(lengths, images, PackingBudget(max_tokens=1024), seed=0)
    assert len(result.rows) <= -(-sum(lengths) // 1024) + 1
    assert result.efficiency >= 0.98


def test_packing_is_deterministic_per_seed():
    lengths, images = _random_lengths(500, seed=2)
    budget = PackingBudget(max_tokens=300, max_images=6)
    a = pack_best_fit_decreasing(lengths, images, budget, seed=5).rows
    b = pack_best_fit_decreasing(list(lengths), list(images), budget, seed=5).rows
    c = pack_best_fit_decreasing(lengths, images, budget, seed=6).rows
    assert a == b
    assert a != c


@pytest.mark.parametrize("bad", [dict(max_tokens=0), dict(max_tokens=8, max_images=0)])
def test_budget_validation(bad):
    with pytest.raises(ValueError, match="must be a positive integer"):
        PackingBudget(**bad)


class _RecordingImageProcessor:
    """Stands in for `processor.image_processor`: tags each image with its first pixel so order is checkable."""

    def __call__(self, images, return_tensors="pt"):
        values = torch.tensor([float(im.getpixel((0, 0))[0]) for im in images])
        return {"pixel_values": values.view(-1, 1, 1, 1).expand(-1, 3, 2, 2).clone()}


def _image(tag):
    return Image.new("RGB", (4, 4), (tag, 0, 0))


def test_collator_positions_labels_images_and_no_attention_mask():
    img = 99  # image token id
    rows = [
        [  # row 0: sample A (1 image) then B (2 images)
            {"input_ids": [1, img, 2, 3], "labels": [-100, -100, 2, 3], "images": [_image(10)]},
            {"input_ids": [4, img, img, 5, 6], "labels": [-100, -100, -100, 5, 6], "images": [_image(20), _image(30)]},
        ],
        [  # row 1: text-only C, then D (1 image); shorter than row 0, so padded
            {"input_ids": [7, 8], "labels": [7, 8], "images": []},
            {"input_ids": [img, 9], "labels": [-100, 9], "images": [_image(40)]},
        ],
    ]
    collator = DataCollatorForPackedVisionLanguageModeling(_RecordingImageProcessor(), pad_token_id=0)
    batch = collator(rows)
    assert "attention_mask" not in batch
    assert batch["input_ids"].tolist() == [[1, img, 2, 3, 4, img, img, 5, 6], [7, 8, img, 9, 0, 0, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 3, 4], [0, 1, 0, 1, 0, 1, 2, 3, 4]]
    # -100 at each sample's first token (C's own label 7 included), outside answers and on the pad tail
    assert batch["labels"].tolist() == [[-100, -100, 2, 3, -100, -100, -100, 5, 6],
                                        [-100, 8, -100, 9, -100, -100, -100, -100, -100]]
    # images in placeholder order: row 0 (A, B, B) then row 1 (D)
    assert batch["pixel_values"][:, 0, 0, 0].tolist() == [10.0, 20.0, 30.0, 40.0]
    stats = batch[PACKING_STATS_KEY]
    assert (stats["real_tokens"], stats["slots"], stats["images"], stats["samples"]) == (13, 18, 4, 4)


def test_collator_pad_to_multiple_and_text_only_batch():
    rows = [[{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "images": []}]]
    batch = DataCollatorForPackedVisionLanguageModeling(None, pad_token_id=0, pad_to_multiple_of=8)(rows)
    assert batch["input_ids"].shape == (1, 8) and "pixel_values" not in batch
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 0, 1, 2, 3, 4]


def test_collator_flatten_makes_one_row_without_padding():
    rows = [[{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "images": []}],
            [{"input_ids": [4, 5], "labels": [4, 5], "images": []}]]
    batch = DataCollatorForPackedVisionLanguageModeling(None, pad_token_id=0, flatten=True)(rows)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[-100, 2, 3, -100, 5]]
