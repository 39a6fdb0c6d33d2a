"""`PackedDataset`: a map-style dataset whose items are whole packed rows.

One item is one row, so every sampler and sharder (the Trainer's seeded sampler, accelerate's per-rank split under
DDP/FSDP/DeepSpeed) hands out whole rows: a sample is never split across ranks or steps.
"""

from __future__ import annotations

from typing import Any

import torch

from .packing import PackingBudget, PackingResult, pack_best_fit_decreasing
from .samples import DropReport, SampleEncoder, encode_dataset

__all__ = ["PackedDataset", "build_packed_dataset"]


class PackedDataset(torch.utils.data.Dataset):
    """Rows of encoded samples. `self[i]` is `{"samples": [{"input_ids", "labels", "images", "source_index",
    "sample_id"}, ...]}`; images stay undecoded until the collator (in a DataLoader worker) loads them."""

    def __init__(self, samples, packing: PackingResult, drop_report: DropReport | None = None):
        self.samples = samples
        self.packing = packing
        self.rows = packing.rows
        self.drop_report = drop_report or DropReport()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        columns = self.samples[self.rows[index]]  # dict of lists, one entry per sample of the row
        n = len(self.rows[index])
        images = columns.get("images") or [[] for _ in range(n)]
        names = columns.get("sample_id") or [str(i) for i in columns["source_index"]]
        return {"samples": [
            {"input_ids": ids, "labels": labels, "images": imgs or [], "source_index": src, "sample_id": name}
            for ids, labels, imgs, src, name in zip(columns["input_ids"], columns["labels"], images,
                                                    columns["source_index"], names)
        ]}

    def summary(self) -> dict:
        return {**self.packing.summary(), "dropped": self.drop_report.to_dict()}


def build_packed_dataset(dataset, encoder: SampleEncoder, budget: PackingBudget, *, seed: int, strict: bool = False,
                         num_proc: int | None = None) -> PackedDataset:
    """Encode `dataset`, drop (or refuse) bad samples, and pack the rest with best-fit-decreasing."""
    samples, report = encode_dataset(dataset, encoder, strict=strict, num_proc=num_proc)
    packing = pack_best_fit_decreasing(samples["length"], samples["num_images"], budget, seed=seed)
    # The encoder already drops these; the packer's own checks only fire if the budgets differ from the encoder's.
    for i in packing.too_long:
        report.add("too_long", str(samples[i]["source_index"]))
    for i in packing.too_many_images:
        report.add("too_many_images", str(samples[i]["source_index"]))
    report.kept -= len(packing.too_long) + len(packing.too_many_images)
    return PackedDataset(samples, packing, report)
