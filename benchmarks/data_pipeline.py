"""The data path, streamed and offline, side by side: time to the first batch, steady rate, packing fill.

    python benchmarks/data_pipeline.py                    # CPU, tiny preset: 2,000 and 20,000 streamed samples
    python benchmarks/data_pipeline.py --quick            # 100 and 1,000 samples (what the test runs)
    python benchmarks/data_pipeline.py --device cuda --preset infimed-foundation-1.7b --attn sdpa,flex_attention

Two datasets, the second 10x the first, are written to a temporary folder as local parquet shards in the TRL vision
schema (`id`, `messages`, `images` as PNG bytes; the medical VQA length mix of `benchmarks/synthetic_vqa.py`, the
small one a prefix of the large one). For each:

- `first_step_seconds_*`: from the start of building the streamed data path (open the shards as a `datasets`
  `IterableDataset`, encoder, `StreamingPackedDataset`, DataLoader with the packed collator) to the first
  collated batch of packed rows ready for a training step. Streaming encodes one buffer before the first row, so
  this should not grow with the dataset (goal: large / small < 1.5). Small and large runs alternate, `--repeats`
  times; the figures are medians (`first_step_seconds_each_run` lists them all).
- `steady_samples_per_s_per_worker`: samples (and tokens) per second of the large dataset's loader in one process
  after the first batch, over two buffers of samples: read, encode, pack, decode the images and preprocess them.
  A streamed stage does all of this in the training process (`dataloader_num_workers: 0`, docs/streaming.md).
- `streaming_packing_efficiency` / `offline_packing_efficiency`: real tokens / (rows x `max_length`) of the small
  dataset streamed with a buffer of `--buffer-size` samples, and packed whole (`build_packed_dataset`, the offline
  path; its time to the first batch is `offline_first_step_seconds_small`, and grows with the dataset).
- What a model consumes: `consumer_tokens_per_s` = MFU x peak / (6 x N), N the language model's parameters
  (embeddings included, as the 6 x N x tokens estimate of training FLOPs per token counts them) of the 1.7B preset,
  at 40% MFU of the H100's bf16 dense peak (989 TFLOP/s, the datasheet's SXM figure without sparsity), and in
  samples/s with this dataset's mean sample length at that preset's image tokens. `keeps_up`: `--workers`
  processes (1 for a streamed stage) at the measured per-worker rate deliver at least that. The synthetic images
  are `--image-size` pixels (the benchmark preset's: 64 for tiny); the 1.7B preset's 384-pixel images cost more
  to decode and preprocess, so the CPU default is optimistic there (`--image-size 384` measures it).

`--device cuda` also trains a few steps of `--preset` in bf16 on the streamed batches for each `--attn`
implementation and reports step time, MFU and peak memory (`gpu`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import datasets
import torch
from synthetic_vqa import features, synthetic_rows

from infimed.core.datasets import load_table
from infimed.modeling.presets import build_model, get_preset
from infimed.testing import tiny_processor
from infimed.training.collator import PACKING_STATS_KEY, DataCollatorForPackedVisionLanguageModeling
from infimed.training.packed_dataset import build_packed_dataset
from infimed.training.packing import PackingBudget
from infimed.training.samples import SampleEncoder
from infimed.training.streaming import StreamingPackedDataset

__all__ = ["main"]

# H100 SXM bf16 dense tensor-core peak, TFLOP/s (NVIDIA datasheet; 1,979 is the figure with 2:4 sparsity).
H100_BF16_DENSE_PEAK_TFLOPS = 989.0
# The MFU a well-tuned 1.7B run reaches on one H100; docs/gpu-baseline.md measured 25-30% for plain transformers.
CONSUMER_MFU = 0.40
CONSUMER_PRESET = "infimed-foundation-1.7b"
# Rows of a packed parquet shard: several shards even for the small dataset, as `infimed curate` writes them.
SHARD_ROWS = 500


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--preset", default="tiny", help="Model preset of the GPU steps and of the image tokens.")
    parser.add_argument("--num-samples", type=int, default=2000, help="Small dataset; the large one is 10x.")
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 samples, a buffer of 100 (tests).")
    parser.add_argument("--max-length", type=int, default=None,
                        help="Packed row length (default: 768 tiny, as benchmarks/packing.py; 8192 otherwise).")
    parser.add_argument("--buffer-size", type=int, default=1000,
                        help="Streaming best-fit buffer (1000: DEFAULT_BUFFER_SIZE of training/streaming.py).")
    parser.add_argument("--rows-per-step", type=int, default=4, help="Packed rows per batch.")
    parser.add_argument("--steady-samples", type=int, default=None,
                        help="Samples timed after the first batch (default: 2 x the buffer, so the rate includes "
                             "refilling the buffer, not only the rows packed before the first batch).")
    parser.add_argument("--image-size", type=int, default=None,
                        help="Pixels of the synthetic images (default: the preset's vision image size).")
    parser.add_argument("--workers", type=int, default=1,
                        help="Processes feeding one GPU, for `keeps_up` (1: a streamed stage reads, packs and "
                             "collates in the training process, `dataloader_num_workers: 0`, docs/streaming.md).")
    parser.add_argument("--attn", default="sdpa", help="CUDA: comma-separated attention implementations to time.")
    parser.add_argument("--gpu-steps", type=int, default=10, help="CUDA: training steps per attention kind.")
    parser.add_argument("--repeats", type=int, default=3, help="Streamed runs per size; figures are medians.")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.num_samples, opts.buffer_size, opts.repeats = 100, 100, 1
    opts.steady_samples = opts.steady_samples or 2 * opts.buffer_size
    return opts


def _write_shards(folder: str, n: int, seed: int, image_size: int) -> dict:
    """`n` samples as `train-XXXXX.parquet` shards of `SHARD_ROWS` rows, shard k drawn from (seed, k): a smaller
    dataset of the same seed is a prefix of a larger one, and only one shard is held in memory."""
    start, shards = time.perf_counter(), 0
    os.makedirs(folder)
    for shards, first in enumerate(range(0, n, SHARD_ROWS), start=1):
        rows = synthetic_rows(min(SHARD_ROWS, n - first), seed * 1_000_003 + shards, image_size, png=True,
                              start=first)
        part = datasets.Dataset.from_list(rows, features=features())
        part.to_parquet(os.path.join(folder, f"train-{shards - 1:05d}.parquet"))
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    return {"samples": n, "shards": shards, "megabytes": round(size / 2**20, 2),
            "write_seconds": round(time.perf_counter() - start, 2)}


def _setup(opts) -> dict:
    spec = get_preset(opts.preset)
    max_length = opts.max_length or (768 if opts.preset == "tiny" else 8192)
    image_size = opts.image_size or spec.vision_config["image_size"]
    # The tiny byte-level tokenizer stands in for every preset's (no download); the image tokens are the preset's.
    processor = tiny_processor(num_image_tokens=spec.num_image_tokens)
    processor.image_processor.image_size = image_size
    encoder = SampleEncoder(processor, max_length, image_token_id=processor.image_token_id)
    return dict(spec=spec, processor=processor, encoder=encoder, collator=_collator(processor, max_length, "sdpa"),
                max_length=max_length, image_size=image_size, budget=PackingBudget(max_tokens=max_length))


def _collator(processor, max_length: int, attn: str):
    return DataCollatorForPackedVisionLanguageModeling(
        processor.image_processor, pad_token_id=processor.tokenizer.pad_token_id,
        image_token_id=processor.image_token_id, max_length=max_length,
        flatten=attn.startswith("flash"))  # flash-attention varlen finds samples only inside one flattened row


def _streamed_rows(folder: str, env: dict, opts):
    stream = load_table(folder, "train", streaming=True)
    return StreamingPackedDataset(stream, env["encoder"], env["budget"], buffer_size=opts.buffer_size, seed=opts.seed)


def _batch_figures(batch) -> tuple[int, int]:
    stats = batch[PACKING_STATS_KEY]
    return stats["samples"], stats["real_tokens"]


def _streaming_run(folder: str, env: dict, opts) -> dict:
    """Time to the first batch from nothing built, then the steady rate over `--steady-samples` more samples."""
    start = time.perf_counter()
    rows = _streamed_rows(folder, env, opts)
    loader = torch.utils.data.DataLoader(rows, batch_size=opts.rows_per_step, collate_fn=env["collator"],
                                         num_workers=0)
    batches = iter(loader)
    next(batches)  # the first batch: what step 0 waits for
    first_seconds = time.perf_counter() - start
    samples = tokens = steps = 0
    steady_start = time.perf_counter()
    for batch in batches:
        n, t = _batch_figures(batch)
        samples, tokens, steps = samples + n, tokens + t, steps + 1
        if samples >= opts.steady_samples:
            break
    seconds = time.perf_counter() - steady_start
    return {"first_step_seconds": first_seconds, "steady_batches": steps, "steady_samples": samples,
            "steady_seconds": seconds, "samples_per_s": samples / seconds if seconds else 0.0,
            "tokens_per_s": tokens / seconds if seconds else 0.0}


def _streaming_efficiency(folder: str, env: dict, opts) -> dict:
    """Every row of one pass over the stream (encode and pack only; images are not decoded here)."""
    rows = _streamed_rows(folder, env, opts)
    for _ in rows:
        pass
    return rows.summary()


def _offline_run(folder: str, env: dict, opts) -> dict:
    """The map-style path: load, encode everything, pack the whole dataset, first batch."""
    start = time.perf_counter()
    dataset = load_table(folder, "train")
    packed = build_packed_dataset(dataset, env["encoder"], env["budget"], seed=opts.seed)
    loader = torch.utils.data.DataLoader(packed, batch_size=opts.rows_per_step, collate_fn=env["collator"])
    next(iter(loader))
    seconds = time.perf_counter() - start
    lengths, images = packed.samples["length"], packed.samples["num_images"]
    return {"first_step_seconds": seconds, "summary": packed.summary(), "lengths": lengths, "num_images": images}


def _lm_parameters(preset: str) -> int:
    """Language-model parameters of `preset`, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = build_model(preset)
    return sum(p.numel() for p in model.model.language_model.parameters())


def _consumer(offline: dict, env: dict, opts, per_worker_samples_per_s: float) -> dict:
    """The rate a 1.7B model trains at on one H100 at `CONSUMER_MFU`, and whether the data path keeps up."""
    spec = get_preset(CONSUMER_PRESET)
    n_params = _lm_parameters(CONSUMER_PRESET)
    tokens_per_s = CONSUMER_MFU * H100_BF16_DENSE_PEAK_TFLOPS * 1e12 / (6 * n_params)
    # This dataset's samples at the consumer's image tokens: text tokens (the tiny tokenizer's) + images x tokens.
    ours = env["spec"].num_image_tokens
    text = [n - k * ours for n, k in zip(offline["lengths"], offline["num_images"])]
    mean_tokens = (sum(text) + sum(offline["num_images"]) * spec.num_image_tokens) / len(text)
    samples_per_s = tokens_per_s / mean_tokens
    needed = math.ceil(samples_per_s / per_worker_samples_per_s) if per_worker_samples_per_s else None
    return {
        "consumer": f"{CONSUMER_PRESET} on one H100 at {CONSUMER_MFU:.0%} MFU",
        "consumer_formula": "tokens/s = MFU x peak / (6 x N); FLOPs per trained token = 6 x N",
        "consumer_peak_tflops": H100_BF16_DENSE_PEAK_TFLOPS,
        "consumer_peak_kind": "H100 SXM bf16 dense (datasheet, no sparsity)",
        "consumer_mfu": CONSUMER_MFU,
        "consumer_lm_parameters": n_params,
        "consumer_image_tokens": spec.num_image_tokens,
        "consumer_mean_tokens_per_sample": round(mean_tokens, 1),
        "consumer_tokens_per_s": round(tokens_per_s, 1),
        "consumer_samples_per_s": round(samples_per_s, 2),
        "workers_needed": needed,
        "workers_assumed": opts.workers,
        "keeps_up": needed is not None and needed <= opts.workers,
    }


def _gpu_steps(folder: str, env: dict, opts) -> dict:
    """bf16 training steps of `--preset` on the first streamed rows, per attention implementation: time, MFU, memory."""
    rows = list(itertools.islice(iter(_streamed_rows(folder, env, opts)), opts.rows_per_step * opts.gpu_steps))
    figures = {}
    overrides = {"num_image_tokens": env["spec"].num_image_tokens, "image_token_id": env["processor"].image_token_id}
    for attn in opts.attn.split(","):
        model = build_model(opts.preset, seed=opts.seed, **overrides).to(torch.bfloat16).cuda()
        model.config._attn_implementation = attn
        lm_params = sum(p.numel() for p in model.model.language_model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        collator = _collator(env["processor"], env["max_length"], attn)
        batches = [collator(rows[i : i + opts.rows_per_step]) for i in range(0, len(rows), opts.rows_per_step)]
        torch.cuda.reset_peak_memory_stats()
        tokens, seconds = 0, 0.0
        for step, batch in enumerate(batches):
            useful = batch[PACKING_STATS_KEY]["real_tokens"]
            inputs = {k: v.cuda() for k, v in batch.items() if k != PACKING_STATS_KEY and torch.is_tensor(v)}
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
            torch.cuda.synchronize()
            start = time.perf_counter()
            model(**inputs, use_cache=False).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            if step > 0:  # the first step allocates and picks kernels
                tokens, seconds = tokens + useful, seconds + time.perf_counter() - start
        figures[attn] = {
            "timed_steps": max(0, len(batches) - 1),
            "useful_tokens_per_s": round(tokens / seconds, 1) if seconds else None,
            "mfu_at_989_tflops": round(6 * lm_params * tokens / seconds / (H100_BF16_DENSE_PEAK_TFLOPS * 1e12), 4)
            if seconds else None,
            "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        }
        del model, optimizer
        torch.cuda.empty_cache()
    return figures


def main(argv: list[str] | None = None) -> dict:
    opts = _parse(sys.argv[1:] if argv is None else list(argv))
    workdir = tempfile.mkdtemp(prefix="infimed-data-pipeline-")
    # A fresh `datasets` cache: the offline encoding is cached by fingerprint and must not come from an earlier run.
    datasets.config.HF_DATASETS_CACHE = os.path.join(workdir, "cache")
    try:
        return _measure(opts, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _measure(opts, workdir: str) -> dict:
    datasets.disable_progress_bars()
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device.")
    env = _setup(opts)
    small, large = os.path.join(workdir, "small"), os.path.join(workdir, "large")
    written = {"small": _write_shards(small, opts.num_samples, opts.seed, env["image_size"]),
               "large": _write_shards(large, 10 * opts.num_samples, opts.seed, env["image_size"])}
    # Each path once before timing, so one-time imports and lazy initialisation land on no measured figure; then
    # small and large alternate (a shared machine's speed drifts), and each figure is the median of the repeats.
    _streaming_run(small, env, opts)
    runs = {"small": [], "large": []}
    for _ in range(opts.repeats):
        runs["small"].append(_streaming_run(small, env, opts))
        runs["large"].append(_streaming_run(large, env, opts))
    streamed = {size: {key: statistics.median(run[key] for run in done) for key in ("first_step_seconds",
                                                                                  "samples_per_s", "tokens_per_s")}
                for size, done in runs.items()}
    streamed["large"]["steady_samples"] = runs["large"][0]["steady_samples"]
    efficiency = _streaming_efficiency(small, env, opts)
    offline = _offline_run(small, env, opts)
    per_worker = streamed["large"]["samples_per_s"]
    result = {
        "preset": opts.preset,
        "device": opts.device,
        "max_length": env["max_length"],
        "image_size": env["image_size"],
        "num_image_tokens": env["spec"].num_image_tokens,
        "buffer_size": opts.buffer_size,
        "rows_per_step": opts.rows_per_step,
        "samples_small": written["small"]["samples"],
        "samples_large": written["large"]["samples"],
        "datasets": written,
        "first_step_seconds_small": round(streamed["small"]["first_step_seconds"], 3),
        "first_step_seconds_large": round(streamed["large"]["first_step_seconds"], 3),
        "first_step_ratio_large_to_small": round(streamed["large"]["first_step_seconds"]
                                                 / streamed["small"]["first_step_seconds"], 3),
        "first_step_seconds_each_run": {size: [round(run["first_step_seconds"], 3) for run in done]
                                        for size, done in runs.items()},
        "offline_first_step_seconds_small": round(offline["first_step_seconds"], 3),
        "streaming_packing_efficiency": round(efficiency["packing_efficiency"], 4),
        "offline_packing_efficiency": round(offline["summary"]["packing_efficiency"], 4),
        "streaming_rows": efficiency["rows"],
        "offline_rows": offline["summary"]["rows"],
        "streaming_samples": efficiency["samples"],
        "offline_samples": offline["summary"]["samples"],
        "steady_samples_per_s_per_worker": round(per_worker, 2),
        "steady_tokens_per_s_per_worker": round(streamed["large"]["tokens_per_s"], 1),
        "steady_samples_per_s_per_worker_small": round(streamed["small"]["samples_per_s"], 2),
        "steady_samples_timed": streamed["large"]["steady_samples"],
        "steady_kind": "one process (DataLoader num_workers=0): read, encode, pack, decode and preprocess images",
        **_consumer(offline, env, opts, per_worker),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "hardware": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                     "torch_threads": torch.get_num_threads(),
                     "gpu": torch.cuda.get_device_name(0) if opts.device == "cuda" else None},
    }
    if opts.device == "cuda":
        result["gpu"] = _gpu_steps(large, env, opts)
    return result



if __name__ == "__main__":
    # stdout carries the JSON object alone (`... | python -m json.tool` works); the Trainer's log lines go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        figures = main()
    print(json.dumps(figures, indent=2))
