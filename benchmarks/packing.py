"""Padded (TRL's stock VLM path) vs packed (InfiMedSFTTrainer) training, side by side in one process.

    python benchmarks/packing.py                                           # CPU, tiny preset, 2,000 samples
    python benchmarks/packing.py --device cuda --preset infimed-foundation-1.7b

Both paths train on the same pool of synthetic medical VQA (short yes/no and multiple-choice answers, short open
answers, long captions and reports; 1 to 4 images per sample), 2,000 samples by default: best-fit packing needs a
pool that large to fill its rows (96 samples left rows ~7% empty). The steps of the two paths are interleaved (a
shared machine's speed drifts; see `_interleaved`), from the same initial weights with the same optimiser; on CPU a
fixed number of steps per path is timed (`--timed-steps`), on CUDA the whole epoch. Packing and padding efficiency
are computed on the whole pool. A packed step holds as many token slots as a padded step does on average
(`--rows`, derived from the pool), so both pay the same per-step costs (optimiser step, kernel launches) and
`packed_cost_per_slot_ratio`, the packed path's time per processed token slot (padding included) over the padded
path's, shows only what packing adds per token; the speedup is then the efficiency ratio over that cost ratio.
The padded path runs `--attn` (sdpa), the packed path `--packed-attn` (default on CPU `sdpa_varlen`, sdpa per packed
sample with no dense block mask, as the packed trainer picks on CPU; on CUDA `--attn`); the JSON names both.

Prints one JSON object: packing/padding efficiency, the cost-per-slot ratio, useful (non-padding) tokens per second,
speedup, peak memory per path, the packed-vs-unpacked loss difference on the same samples, the machine's load and
the hardware. On CUDA it also
reports model FLOPs utilisation, 6 x LM parameters x useful tokens / time / peak (`--peak-tflops`, default: the
bf16 matmul peak measured on the project's H100, docs/gpu-baseline.md).

Random weights (`--preset` architectures, no download); the tiny preset's own byte-level tokenizer is used for every
preset, so text lengths are in that tokenizer's tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import sys
import threading
import time

from synthetic_vqa import packer_figures, synthetic_dataset

from infimed.training import packed_dataset
from infimed.training.packing import pack_plain_best_fit_decreasing

__all__ = ["main"]

# bf16 dense matmul peak measured on the project's H100 80GB (docs/gpu-baseline.md), in TFLOP/s.
H100_MEASURED_PEAK_TFLOPS = 798.0


class _PeakRSS:
    """Peak resident memory above the level at start, sampled every 10 ms (CPU; CUDA uses the allocator's peak).

    Only meaningful in a fresh process: memory an earlier run freed stays in the heap and hides the next run's peak,
    so on CPU each path's memory is measured in its own child process (`_memory_probe`).
    """

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        self.base = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self.base)
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _trainer_classes():
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from infimed.training.collator import PACKING_STATS_KEY
    from infimed.training.sft_trainer import InfiMedSFTTrainer

    class Clock(TrainerCallback):
        def __init__(self):
            self.step_ends, self.cpu_ends = [], []

        def on_step_end(self, args, state, control, **kwargs):
            self.step_ends.append(time.perf_counter())
            self.cpu_ends.append(time.process_time())

    class PaddedCounting(SFTTrainer):
        def compute_loss(self, model, inputs, **kwargs):
            self.useful.append(int(inputs["attention_mask"].sum()))
            self.slots.append(int(inputs["attention_mask"].numel()))
            return super().compute_loss(model, inputs, **kwargs)

    class PackedCounting(InfiMedSFTTrainer):
        def compute_loss(self, model, inputs, **kwargs):
            stats = inputs[PACKING_STATS_KEY]
            self.useful.append(stats["real_tokens"])
            self.slots.append(stats["slots"])
            return super().compute_loss(model, inputs, **kwargs)

    return Clock, PaddedCounting, PackedCounting


def _run(trainer_cls, clock_cls, make_model, args, dataset, processor, cuda, warmup, attn=None):
    import torch

    clock = clock_cls()
    prep = time.perf_counter()
    trainer = trainer_cls(model=make_model(), args=args, train_dataset=dataset, processing_class=processor,
                          callbacks=[clock])
    if attn:  # the packed trainer switches sdpa to sdpa_varlen on CPU by itself; run what was asked for
        trainer.model.set_attn_implementation(attn)
    prep = time.perf_counter() - prep
    trainer.useful, trainer.slots = [], []
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with _PeakRSS() as rss:
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.train()
        if cuda:
            torch.cuda.synchronize()
        end = time.perf_counter()
    peak_mb = (torch.cuda.max_memory_allocated() if cuda else rss.peak) / 2**20
    # Throughput after the warm-up steps (first-step allocation / kernel selection is not steady state).
    w = min(warmup, len(clock.step_ends) - 1)
    t0 = clock.step_ends[w - 1] if w > 0 else start
    seconds = clock.step_ends[-1] - t0
    # CPU seconds of this process (all its threads): far less sensitive than wall time to other jobs on the machine
    cpu_seconds = clock.cpu_ends[-1] - (clock.cpu_ends[w - 1] if w > 0 else cpu_start)
    useful_timed = sum(trainer.useful[w:])
    return {
        "trainer": trainer,
        "steps": len(clock.step_ends),
        "seconds": end - start,
        "prep_seconds": prep,
        "useful_tokens": sum(trainer.useful),
        "slots": sum(trainer.slots),
        "useful_tokens_per_s": useful_timed / seconds,
        "useful_tokens_per_cpu_s": useful_timed / cpu_seconds,
        "timed_tokens": useful_timed,
        "timed_seconds": seconds,
        "peak_memory_mb": peak_mb,
    }


def _interleaved(trainers: dict, warmup: int, cuda: bool, timed_steps: int | None = None) -> dict:
    """Each path's steps (one epoch, or `warmup + timed_steps`), interleaved so both run under the same conditions.

    A shared CPU's speed drifts by several x within minutes; timing the paths one after the other compares the
    machine, not the paths. The path that has trained on fewer useful tokens so far takes the next step. Each step is
    the trainer's own `training_step` (collator output, TRL loss, backward) plus its optimizer and scheduler step.
    """
    import torch

    state = {}
    for name, trainer in trainers.items():
        trainer.model.train()
        loader = trainer.get_train_dataloader()
        trainer.create_optimizer_and_scheduler(num_training_steps=len(loader))
        trainer.current_gradient_accumulation_steps = 1  # set by `train()`, which this loop replaces
        state[name] = {"it": iter(loader), "steps": 0, "tokens": 0, "timed_tokens": 0, "timed_slots": 0,
                       "seconds": 0.0, "timed_seconds": 0.0, "timed_cpu": 0.0, "done": False}
    while not all(st["done"] for st in state.values()):
        # A whole epoch: the path behind in useful tokens steps next. A fixed number of steps (about as many slots
        # each): strict alternation, so neither path runs its last steps alone under other load.
        balance = "tokens" if timed_steps is None else "steps"
        name = min((n for n in state if not state[n]["done"]), key=lambda n: state[n][balance])
        trainer, st = trainers[name], state[name]
        if timed_steps is not None and st["steps"] >= warmup + timed_steps:
            st["done"] = True
            continue
        try:
            batch = next(st["it"])
        except StopIteration:
            st["done"] = True
            continue
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        trainer.optimizer.zero_grad()
        if cuda:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        st["tokens"] += trainer.useful[-1]
        st["seconds"] += wall
        if st["steps"] >= warmup:  # first steps: allocation and kernel selection, not steady state
            st["timed_tokens"] += trainer.useful[-1]
            st["timed_slots"] += trainer.slots[-1]
            st["timed_seconds"] += wall
            st["timed_cpu"] += cpu
        st["steps"] += 1
    return {name: {
        "steps": st["steps"],
        "seconds": st["seconds"],
        "useful_tokens": sum(trainers[name].useful),
        "slots": sum(trainers[name].slots),
        "useful_tokens_per_s": st["timed_tokens"] / st["timed_seconds"],
        "useful_tokens_per_cpu_s": st["timed_tokens"] / st["timed_cpu"],
        "timed_steps": st["steps"] - min(warmup, st["steps"]),
        "timed_useful_tokens": st["timed_tokens"],
        "timed_slots": st["timed_slots"],
        "seconds_per_slot": st["timed_seconds"] / st["timed_slots"],
        "cpu_seconds_per_slot": st["timed_cpu"] / st["timed_slots"],
    } for name, st in state.items()}


def _padded_pool(lengths: list[int], batch_size: int, max_length: int, seed: int) -> dict:
    """Padding efficiency of the whole pool in random batches (the padded trainer's sampler is random too): each
    batch is padded to its longest sample, capped at `max_length` (the padded path truncates there)."""
    order = random.Random(seed).sample(range(len(lengths)), len(lengths))
    capped = [min(lengths[i], max_length) for i in order]
    batches = [capped[i : i + batch_size] for i in range(0, len(capped), batch_size)]
    slots = sum(len(b) * max(b) for b in batches)
    return {"efficiency": sum(capped) / slots, "slots_per_batch": slots / len(batches)}


def _loss_abs_diff(trainer, model) -> float:
    """|packed loss - token-weighted unpacked loss| on the samples of the first packed rows, same weights."""
    import torch

    from infimed.training.collator import PACKING_STATS_KEY

    rows = [trainer.train_dataset[i]["samples"] for i in range(min(2, len(trainer.train_dataset)))]
    model.eval()
    with torch.no_grad(), trainer.compute_loss_context_manager():
        batch = trainer._prepare_inputs(trainer.data_collator(rows))
        packed = float(trainer.compute_loss(model, batch))
        samples = [s for row in rows for s in row]
        counts = [sum(label != -100 for label in s["labels"][1:]) for s in samples]
        unpacked = 0.0
        for sample, count in zip(samples, counts):
            alone = trainer._prepare_inputs(trainer.data_collator([[sample]]))
            alone.pop(PACKING_STATS_KEY)
            unpacked += float(model(**alone, use_cache=False).loss) * count / sum(counts)
    return abs(packed - unpacked)


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--preset", default="tiny", help="tiny | infimed-foundation-1.7b | infimed-foundation-4b")
    parser.add_argument("--num-samples", type=int, default=2000,
                        help="Pool size (2,000: best-fit packing fills its rows only from a pool this large).")
    parser.add_argument("--num-image-tokens", type=int, default=None, help="Visual tokens per image (preset's SFT value).")
    parser.add_argument("--max-length", type=int, default=None,
                        help="Packed row length (default: 768 tiny, 8192 otherwise), also the padded path's cap.")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="Samples per padded batch (8: TRL's SFTConfig default per_device_train_batch_size).")
    parser.add_argument("--rows", type=int, default=None,
                        help="Packed rows per step (default: the rows that hold a mean padded batch's slots, so both "
                             "paths pay the same per-step costs).")
    parser.add_argument("--warmup-steps", type=int, default=2, help="Steps left out of the throughput.")
    parser.add_argument("--timed-steps", type=int, default=None,
                        help="Steps per path timed after the warm-up (default: 20 on CPU, where an epoch of 2,000 "
                             "samples takes hours; the whole epoch on CUDA).")
    parser.add_argument("--peak-tflops", type=float, default=H100_MEASURED_PEAK_TFLOPS,
                        help="Accelerator peak for MFU (bf16 TFLOP/s); default: the H100 measured in docs/gpu-baseline.md.")
    parser.add_argument("--attn", default="sdpa",
                        help="The padded path's attention implementation (sdpa, eager, flex_attention, ...).")
    parser.add_argument("--packed-attn", default=None,
                        help="The packed path's (default on CPU with --attn sdpa: `sdpa_varlen`, sdpa per packed "
                             "sample without the dense block mask, as the packed trainer picks there; else --attn).")
    parser.add_argument("--memory-steps", type=int, default=4, help="CPU: steps of each fresh-process memory probe.")
    parser.add_argument("--packer", choices=["subset", "plain"], default="subset",
                        help="The trainer's packer: `subset` (training/packing.py's) or `plain` best-fit-decreasing, "
                             "to compare what the fuller rows cost per slot.")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _setup(opts) -> dict:
    """Model factory, data, processor and shared trainer arguments, identical for both paths (and child probes)."""
    import datasets
    import torch
    from transformers import set_seed

    from infimed.modeling import SDPA_VARLEN
    from infimed.modeling.presets import build_model, get_preset
    from infimed.testing import tiny_processor
    from infimed.training.sft_config import InfiMedSFTConfig
    from infimed.training.stages import sample_token_lengths

    cuda = opts.device == "cuda"
    if opts.packer == "plain":  # the trainer packs through `build_packed_dataset`, which imported the packer by name
        packed_dataset.pack_best_fit_decreasing = pack_plain_best_fit_decreasing
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device.")
    set_seed(opts.seed)
    spec = get_preset(opts.preset)
    num_image_tokens = opts.num_image_tokens or spec.num_image_tokens
    # Rows just above the longest sample: the tiny model (hidden 128) is attention-bound on long rows, where the
    # block-diagonal mask still costs S^2; the large presets are matmul-bound, so long rows cost little extra there.
    max_length = opts.max_length or (768 if opts.preset == "tiny" else 8192)
    image_size = spec.vision_config["image_size"]
    processor = tiny_processor(num_image_tokens=num_image_tokens)
    processor.image_processor.image_size = image_size
    dtype = torch.bfloat16 if cuda else torch.float32
    # The tiny tokenizer's ids stand in for the preset's vocabulary; only the image token id must agree.
    overrides = {"num_image_tokens": num_image_tokens, "image_token_id": processor.image_token_id}

    if opts.packed_attn is None:
        opts.packed_attn = SDPA_VARLEN if opts.attn == "sdpa" and not cuda else opts.attn

    def make_model(attn: str):
        model = build_model(opts.preset, seed=opts.seed, **overrides).to(dtype)
        model.set_attn_implementation(attn)
        return model.to("cuda" if cuda else "cpu")

    dataset = synthetic_dataset(opts.num_samples, opts.seed, image_size)
    # Each sample's tokens from its text and image count (as `infimed train` counts them for mixing), images undecoded
    undecoded = dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))
    lengths = sample_token_lengths(undecoded, processor, num_image_tokens)
    pool = _padded_pool(lengths, opts.batch_size, max_length, opts.seed)
    pool["shortest_sample"] = min(lengths)
    pool["packer"] = packer_figures(lengths, [len(x) for x in undecoded["images"]],
                                    sorted({max_length, 1024, 2048, 8192}), opts.seed)
    if opts.rows is None:
        opts.rows = max(1, round(pool["slots_per_batch"] / max_length))
    common = dict(learning_rate=1e-4, num_train_epochs=1, logging_steps=1, report_to=[], save_strategy="no",
                  seed=opts.seed, assistant_only_loss=True, gradient_checkpointing=False, bf16=cuda,
                  use_cpu=not cuda, max_length=max_length, dataloader_num_workers=0, optim="adamw_torch")
    return dict(cuda=cuda, dtype=dtype, make_model=make_model, dataset=dataset, processor=processor, common=common,
                max_length=max_length, num_image_tokens=num_image_tokens, config_cls=InfiMedSFTConfig, pool=pool)


def _path_args(env: dict, opts, path: str, **extra):
    if path == "padded":
        return env["config_cls"](output_dir="/tmp/infimed-bench/padded", packing=False,
                                 per_device_train_batch_size=opts.batch_size, **{**env["common"], **extra})
    return env["config_cls"](output_dir="/tmp/infimed-bench/packed", packing=True,
                             per_device_train_batch_size=opts.rows, **{**env["common"], **extra})


def _memory_probe(argv, path: str, steps: int) -> float:
    """Peak RSS increase (MB) of `steps` training steps of one path, in this (fresh) process."""
    opts = _parse(argv)
    env = _setup(opts)
    clock_cls, padded_cls, packed_cls = _trainer_classes()
    trainer_cls = padded_cls if path == "padded" else packed_cls
    args = _path_args(env, opts, path, max_steps=steps, logging_steps=steps, disable_tqdm=True)
    attn = opts.attn if path == "padded" else opts.packed_attn
    with contextlib.redirect_stdout(sys.stderr):  # a spawned child: its Trainer logs must not reach the JSON's stdout
        return _run(trainer_cls, clock_cls, lambda: env["make_model"](attn), args, env["dataset"],
                    env["processor"], env["cuda"], 0, attn=attn)["peak_memory_mb"]


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    opts = _parse(argv)

    import torch

    env = _setup(opts)
    cuda, dtype, make_model = env["cuda"], env["dtype"], env["make_model"]
    dataset, processor = env["dataset"], env["processor"]
    max_length, num_image_tokens = env["max_length"], env["num_image_tokens"]
    Clock, PaddedCounting, PackedCounting = _trainer_classes()

    trainers = {}
    for path, trainer_cls in (("padded", PaddedCounting), ("packed", PackedCounting)):
        prep = time.perf_counter()
        attn = opts.attn if path == "padded" else opts.packed_attn
        trainers[path] = trainer_cls(model=make_model(attn), args=_path_args(env, opts, path, disable_tqdm=True),
                                     train_dataset=dataset, processing_class=processor)
        trainers[path].prep_seconds = time.perf_counter() - prep
        # The packed trainer switches sdpa to sdpa_varlen on CPU by itself; the path runs what was asked for.
        trainers[path].model.set_attn_implementation(attn)
        trainers[path].useful, trainers[path].slots = [], []
    # CPU: a fixed number of steps (an epoch of the pool takes hours on 2 cores); CUDA: the whole epoch.
    timed_steps = opts.timed_steps if opts.timed_steps is not None else (None if cuda else 20)
    load_before = os.getloadavg()[0]
    timed = _interleaved(trainers, opts.warmup_steps, cuda, timed_steps)
    padded, packed, trainer = timed["padded"], timed["packed"], trainers["packed"]
    packed["prep_seconds"] = trainer.prep_seconds

    import multiprocessing

    # Memory: each path alone in a fresh process (freed heap memory and allocator caches would hide the second peak).
    # A step's memory does not depend on the pool's size: the probes build a small pool with the same rows per step.
    probe_argv = [*argv, "--num-samples", str(min(opts.num_samples, 256)), "--rows", str(opts.rows)]
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        for path, measured in (("padded", padded), ("packed", packed)):
            measured["peak_memory_mb"] = pool.apply(_memory_probe, (probe_argv, path, opts.memory_steps))

    lm_params = sum(p.numel() for p in trainer.model.model.language_model.parameters())
    result = {
        "preset": opts.preset,
        "device": opts.device,
        "dtype": str(dtype).replace("torch.", ""),
        # the padded path's kernel, and the packed path's (sdpa_varlen: sdpa per sample, no dense block mask)
        "attn_implementation_padded": trainers["padded"].model.config.text_config._attn_implementation,
        "attn_implementation_packed": trainer.model.config.text_config._attn_implementation,
        "num_samples": opts.num_samples,
        "packer": opts.packer,
        "num_image_tokens": num_image_tokens,
        "max_length": max_length,
        "padded_batch_size": opts.batch_size,
        "packed_rows_per_step": opts.rows,
        # real tokens / (rows x max_length) over the whole pool: the packer's fill of its budget, as the trainer logs
        "packing_efficiency": round(trainer.packing_summary["train"]["packing_efficiency"], 4),
        # the packer at other row lengths next to plain best-fit-decreasing and the bound of any packer (rows left
        # with less room than the shortest sample cannot be filled), and its run time on 2,000 and 100,000 samples
        "shortest_sample_tokens": env["pool"]["shortest_sample"],
        **env["pool"]["packer"],
        # real tokens / (batch x longest sample) over the whole pool in random batches of `padded_batch_size`
        "padded_efficiency": round(env["pool"]["efficiency"], 4),
        # time per processed token slot (padding included), packed over padded, on the timed steps; 1.0: packing
        # adds no per-token cost, so the speedup equals the efficiency ratio
        "packed_cost_per_slot_ratio": round(packed["seconds_per_slot"] / padded["seconds_per_slot"], 3),
        "packed_cost_per_slot_ratio_cpu_time": round(packed["cpu_seconds_per_slot"] / padded["cpu_seconds_per_slot"],
                                                     3),
        "timed_steps_packed": packed["timed_steps"],
        "timed_steps_padded": padded["timed_steps"],
        # the same two figures on the timed steps only (what the throughput below was measured on)
        "packed_batch_efficiency_timed": round(packed["timed_useful_tokens"] / packed["timed_slots"], 4),
        "padded_efficiency_timed": round(padded["timed_useful_tokens"] / padded["timed_slots"], 4),
        "useful_tokens_per_s_packed": round(packed["useful_tokens_per_s"], 1),
        "useful_tokens_per_s_padded": round(padded["useful_tokens_per_s"], 1),
        "speedup": round(packed["useful_tokens_per_s"] / padded["useful_tokens_per_s"], 3),
        "useful_tokens_per_cpu_s_packed": round(packed["useful_tokens_per_cpu_s"], 1),
        "useful_tokens_per_cpu_s_padded": round(padded["useful_tokens_per_cpu_s"], 1),
        "speedup_cpu_time": round(packed["useful_tokens_per_cpu_s"] / padded["useful_tokens_per_cpu_s"], 3),
        "load_average_1min_before": round(load_before, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "peak_memory_mb_packed": round(packed["peak_memory_mb"], 1),
        "peak_memory_mb_padded": round(padded["peak_memory_mb"], 1),
        "peak_memory_kind": ("cuda max_memory_allocated" if cuda else "RSS increase")
        + f" over {opts.memory_steps} steps, each path alone in a fresh process",
        "timing": "steps of the two paths interleaved in one process (same machine conditions)",
        "loss_abs_diff": _loss_abs_diff(trainer, trainer.model),
        "steps_packed": packed["steps"],
        "steps_padded": padded["steps"],
        "seconds_packed": round(packed["seconds"], 2),
        "seconds_padded": round(padded["seconds"], 2),
        "packing_prep_seconds": round(packed["prep_seconds"], 2),
        "useful_tokens_packed": packed["useful_tokens"],
        "useful_tokens_padded": padded["useful_tokens"],
        "dropped_samples": trainer.dropped_samples,
        "lm_parameters": lm_params,
        "hardware": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "torch": torch.__version__,
        },
    }
    if timed_steps is None and padded["useful_tokens"] != packed["useful_tokens"]:
        result["warning"] = "the two paths trained on different token counts (samples dropped or truncated)"
    if cuda:
        peak = opts.peak_tflops * 1e12
        result["peak_tflops"] = opts.peak_tflops
        result["mfu_packed"] = round(6 * lm_params * packed["useful_tokens_per_s"] / peak, 4)
        result["mfu_padded"] = round(6 * lm_params * padded["useful_tokens_per_s"] / peak, 4)
    return result



if __name__ == "__main__":
    # stdout carries the JSON object alone (`... | python -m json.tool` works); the Trainer's log lines go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        figures = main()
    print(json.dumps(figures, indent=2))
