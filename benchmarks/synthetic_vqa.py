"""The benchmarks' synthetic medical VQA pool (the TRL vision schema: `messages` + `images`) and packer figures.

Shared by `benchmarks/packing.py` and `benchmarks/data_pipeline.py`, which import it as a sibling module (they are
run as scripts: `python benchmarks/<name>.py`). The length mix is that of medical VQA: mostly short yes/no,
multiple-choice and open answers, 15% long captions or reports; 1 to 4 images per sample, 70% with one.
"""

from __future__ import annotations

import io
import math
import random
import time

__all__ = ["features", "packer_figures", "synthetic_dataset", "synthetic_rows"]

_WORDS = ("lesion", "opacity", "nodule", "effusion", "normal", "left", "right", "upper", "lower", "zone", "margin",
          "small", "large", "bright", "dark", "round", "irregular", "no", "acute", "finding")


def features():
    import datasets

    return datasets.Features({
        "id": datasets.Value("string"),
        "images": datasets.List(datasets.Image()),
        "messages": [{"role": datasets.Value("string"),
                      "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}]}],
    })


def synthetic_rows(n: int, seed: int, image_size: int, *, png: bool = False, start: int = 0):
    """`n` chat samples; images as PIL images, or `{"bytes": PNG}` dicts with `png=True` (parquet shards)."""
    import numpy as np
    from PIL import Image

    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    rows = []
    for i in range(start, start + n):
        kind = rng.choices(["yes_no", "multiple_choice", "open", "report"], weights=[35, 30, 20, 15])[0]
        # Most medical VQA items show one image; multi-image studies are the minority (1-4 images).
        k = rng.choices([1, 2, 3, 4], weights=[70, 15, 10, 5])[0]
        question = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 16))) + "?"
        if kind == "yes_no":
            answer = rng.choice(["yes", "no"])
        elif kind == "multiple_choice":
            question += "\nOptions:\nA. left\nB. right\nC. both\nD. neither"
            answer = rng.choice("ABCD")
        elif kind == "open":
            answer = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 6)))
        else:
            # caption / radiology-report length: 80-250 words (MIMIC-CXR-like findings + impression)
            answer = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(80, 250))) + "."
        images = [Image.fromarray((nprng.random((image_size, image_size, 3)) * 255).astype("uint8")) for _ in range(k)]
        if png:
            images = [_png(image) for image in images]
        rows.append({
            "id": f"bench-{i}",
            "images": images,
            "messages": [
                {"role": "user", "content": [{"type": "image", "text": None}] * k + [{"type": "text", "text": question}]},
                {"role": "assistant", "content": [{"type": "text", "text": answer}]},
            ],
        })
    return rows


def _png(image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def synthetic_dataset(n: int, seed: int, image_size: int):
    """The pool as an in-memory `datasets.Dataset` (images decoded on access)."""
    import datasets

    return datasets.Dataset.from_list(synthetic_rows(n, seed, image_size), features=features())


def packer_figures(lengths: list[int], num_images: list[int], row_lengths, seed: int) -> dict:
    """The packer on this pool at each row length next to plain best-fit-decreasing and the bound of any packer (all
    rows full but the last), and the packer's run time on the pool and on 100,000 samples drawn from its lengths."""
    from infimed.training.packing import PackingBudget, pack_best_fit_decreasing, pack_plain_best_fit_decreasing

    by_row_length = {}
    for row_length in row_lengths:
        fits = [n for n in lengths if n <= row_length]
        budget = PackingBudget(row_length)
        packed = pack_best_fit_decreasing(lengths, num_images, budget, seed)
        plain = pack_plain_best_fit_decreasing(lengths, num_images, budget, seed)
        bound = sum(fits) / (math.ceil(sum(fits) / row_length) * row_length)
        by_row_length[str(row_length)] = {"efficiency": round(packed.efficiency, 4),
                                          "plain_best_fit_efficiency": round(plain.efficiency, 4),
                                          "bound": round(bound, 4)}
    rng = random.Random(seed)
    draw = [rng.randrange(len(lengths)) for _ in range(100_000)]
    budget = PackingBudget(min(row_lengths))
    seconds = {}
    for name, pool in (("pool", (lengths, num_images)),
                       ("100000", ([lengths[i] for i in draw], [num_images[i] for i in draw]))):
        start = time.perf_counter()
        packed = pack_best_fit_decreasing(*pool, budget, seed)
        seconds[name] = {"samples": len(pool[0]), "seconds": round(time.perf_counter() - start, 3),
                         "efficiency": round(packed.efficiency, 4)}
    return {"packing_efficiency_by_row_length": by_row_length,
            f"packer_seconds_at_{budget.max_tokens}_tokens": seconds}
