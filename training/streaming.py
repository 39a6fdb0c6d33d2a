"""Streamed SFT data: packed rows built on the fly from a `datasets.IterableDataset`, with an exact resume.

    stream = load_table("data/shards", "train", streaming=True)        # local parquet shards or a Hub id
    rows = StreamingPackedDataset(stream, encoder, PackingBudget(max_tokens=2048), buffer_size=1000, seed=42)
    for row in rows:                                                    # the items of `PackedDataset`:
        row["samples"]  # [{"input_ids", "labels", "images", "source_index", "sample_id"}, ...]: collator-ready
    state = rows.state_dict()     # after the last row yielded; `rows.load_state_dict(state)` continues from there

Samples are read and encoded (`SampleEncoder`) one by one into a buffer of `buffer_size` samples. When the buffer
is full it is packed with best-fit-decreasing (`pack_best_fit_decreasing`), the fuller half of the rows is emitted
and the rest stays buffered, to be packed again with the next samples:

    stream ─> encode ─> buffer [s12 s13 s15 s16 ... s40]  (s14 dropped: counted by reason)
                          │ best fit over the buffer
                          ├─> fullest rows, in the packer's seeded order ─> yielded
                          └─> the less full rows' samples stay buffered
    end of the stream: everything left is packed and yielded.

The state is that of `datasets` (`IterableDataset.state_dict()`, the reader position) taken before the oldest
buffered sample, plus the stream positions of the samples still buffered and the rows already decided. Loading it
seeks the stream there and reads forward, re-encoding only the buffered samples, so the same rows follow as in an
uninterrupted run. `StreamStateCallback` saves the state of the rows the Trainer has consumed into each
`checkpoint-*` folder (`stream_state.json`) and restores it on `--resume` (docs/streaming.md).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections import OrderedDict

import torch
from transformers import TrainerCallback

from .packing import PackingBudget, pack_best_fit_decreasing
from .samples import DropReport
from .stage_data import EmptyDataError

__all__ = ["DEFAULT_BUFFER_SIZE", "STREAM_STATE_FILE", "StreamStateCallback", "StreamingPackedDataset",
           "trained_summary"]

logger = logging.getLogger(__name__)

# Samples held for best fit. ~1000 short medical-VQA samples (100-500 tokens) fill rows of 2048 tokens about as
# well as packing the whole dataset offline (tests/training/test_streaming.py compares both); more costs memory
# (token ids only: images stay undecoded) and a longer refill at the start.
DEFAULT_BUFFER_SIZE = 1000
STREAM_STATE_FILE = "stream_state.json"
# Row states kept back: the Trainer's loader reads ahead of the step it trains (accelerate fetches one batch early),
# so a checkpoint asks for the state of an earlier row than the last one read.
_HISTORY = 4096
_STATE_VERSION = 1


def _images(example: dict) -> list:
    if "images" in example:
        return list(example["images"] or [])
    return [example["image"]] if example.get("image") is not None else []


class StreamingPackedDataset(torch.utils.data.IterableDataset):
    """Packed rows of a streamed dataset (`messages` + `images`); items as `PackedDataset.__getitem__`'s.

    Args:
        stream: a `datasets.IterableDataset` (`load_dataset(..., streaming=True)`), images undecoded.
        encoder: a `SampleEncoder` (or any `example -> {input_ids, labels, num_images, length, drop_reason}`).
        budget: the per-row token and image budgets.
        buffer_size: samples buffered for best fit (`DEFAULT_BUFFER_SIZE`); larger packs fuller rows.
        seed: seeds the packer's tie-breaks and row order (with the pass and pack numbers).
        strict: raise on the first bad sample instead of dropping it and counting it by reason.
        id_column: names dropped samples in the summary's examples (the stream position when absent).

    `source_index` of a sample is its position in the stream (0, 1, ... within one pass); `sample_id` its
    `id_column` value (the position when absent). Images stay undecoded: the collator decodes them.
    """

    def __init__(self, stream, encoder, budget: PackingBudget, *, buffer_size: int = DEFAULT_BUFFER_SIZE,
                 seed: int = 0, strict: bool = False, id_column: str = "id"):
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError(f"`packing_buffer_size` must be a positive integer, got {buffer_size!r}.")
        self.stream = stream
        self.encoder = encoder
        self.budget = budget
        self.buffer_size = buffer_size
        self.seed = seed
        self.strict = strict
        self.id_column = id_column
        self._epoch = 0
        self._resume: dict | None = None
        self._state = self._fresh_state(0)
        # rows yielded in total -> the state after that row, as JSON (compact: ~6 bytes per buffered sample)
        self._history: OrderedDict[int, str] = OrderedDict()

    # -- state ----------------------------------------------------------------------------------------------------
    @staticmethod
    def _fresh_state(epoch: int, rows: int = 0, counts: dict | None = None) -> dict:
        return {"version": _STATE_VERSION, "epoch": epoch, "stream": None, "anchor": 0, "read": 0, "buffered": [],
                "pending": [], "packs": 0, "rows": rows, "counts": counts or _empty_counts()}

    def state_dict(self) -> dict:
        """The state after the last row yielded (JSON-able): loading it continues with the next row."""
        return copy.deepcopy(self._resume or self._state)

    def load_state_dict(self, state: dict) -> None:
        """Continue the next iteration from `state` (from `state_dict` or `state_after`)."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"Stream state version {state.get('version')!r} is not {_STATE_VERSION}; it was "
                             "written by another InfiMed version. Restart the stage without `--resume`.")
        self._resume = copy.deepcopy(state)
        self._state = copy.deepcopy(state)
        self._epoch = state["epoch"]
        self._history = OrderedDict([(state["rows"], json.dumps(state))])

    def state_after(self, rows: int) -> dict:
        """The state after `rows` rows were yielded in total (all passes), e.g. those a checkpoint's steps trained."""
        if rows not in self._history:
            known = f"{min(self._history)}..{max(self._history)}" if self._history else "none"
            raise ValueError(f"No stream state after row {rows} (kept: rows {known}); the loader read more than "
                             f"{_HISTORY} rows ahead of training.")
        return json.loads(self._history[rows])

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer's loader before each pass; the pass number seeds the packer."""
        if self._resume is None:
            self._epoch = epoch

    # -- figures --------------------------------------------------------------------------------------------------
    def summary(self, rows: int | None = None) -> dict:
        """Rows and packing figures, and the dropped samples by reason (`PackedDataset.summary`'s keys): up to row
        `rows` when its state is still kept (e.g. the rows training consumed), else of everything read so far."""
        state = json.loads(self._history[rows]) if rows in self._history else self._state
        counts = state["counts"]
        rows, samples = state["rows"], counts["samples"]
        slots = rows * self.budget.max_tokens
        report = DropReport(total=counts["total"], kept=counts["kept"], counts=dict(counts["dropped"]),
                            examples={k: list(v) for k, v in counts["examples"].items()})
        return {
            "rows": rows,
            "samples": samples,
            "tokens": counts["tokens"],
            "packing_efficiency": round(counts["tokens"] / slots, 6) if slots else 0.0,
            "images_per_row": round(counts["images"] / rows, 4) if rows else 0.0,
            "samples_per_row": round(samples / rows, 4) if rows else 0.0,
            "buffer_size": self.buffer_size,
            "dropped": report.to_dict(),
        }

    # -- iteration ------------------------------------------------------------------------------------------------
    def __iter__(self):
        if self.encoder is None:
            raise ValueError("StreamingPackedDataset needs an `encoder` (a `SampleEncoder`) before iterating.")
        state = self._resume or self._fresh_state(self._epoch, self._state["rows"], self._state["counts"])
        self._resume = None
        self._state = copy.deepcopy(state)
        stream = copy.deepcopy(self.stream)  # a pristine reader per pass: `load_state_dict` must not stick
        if state["stream"] is not None:
            stream.load_state_dict(state["stream"])
        reader = iter(stream)
        counts = self._state["counts"]
        seq = state["anchor"]
        after_last = state["stream"]  # reader position after the last sample read (None: the stream's start)
        before: dict[int, dict | None] = {}  # buffered sample -> reader position before it
        buffer: dict[int, dict] = {}  # buffered sample -> its encoding
        wanted = set(state["buffered"])
        exhausted = False

        def read():
            nonlocal seq, after_last, exhausted
            try:
                example = next(reader)
            except StopIteration:
                exhausted = True
                return None
            position, seq = seq, seq + 1
            previous, after_last = after_last, stream.state_dict()
            return position, previous, example

        # Replay: from the anchor up to the last sample read, re-encode the buffered ones, skip the rest.
        while seq < state["read"]:
            got = read()
            if got is None:
                raise ValueError(f"The stream ended at sample {seq} while restoring its state (read up to "
                                 f"{state['read']}): the data changed since the checkpoint. Restart the stage "
                                 "without `--resume`, or restore the data.")
            position, previous, example = got
            if position in wanted:
                encoded = self._encode(example, position)
                if encoded is None:
                    raise ValueError(f"Buffered sample {position} no longer encodes as it did before the checkpoint: "
                                     "the data or the encoder changed. Restart the stage without `--resume`.")
                buffer[position], before[position] = encoded, previous
        pending = [list(row) for row in state["pending"]]

        while True:
            while pending:
                row = pending.pop(0)
                item = {"samples": [buffer[i]["sample"] for i in row]}
                counts["samples"] += len(row)
                counts["tokens"] += sum(buffer[i]["length"] for i in row)
                counts["images"] += sum(buffer[i]["num_images"] for i in row)
                for i in row:
                    del buffer[i], before[i]
                self._record(pending, buffer, before, after_last, seq)
                yield item
            while len(buffer) < self.buffer_size and not exhausted:
                got = read()
                if got is None:
                    break
                position, previous, example = got
                counts["total"] += 1
                encoded = self._encode(example, position)
                if encoded is None:
                    continue
                counts["kept"] += 1
                buffer[position], before[position] = encoded, previous
            if not buffer:
                break
            pending = self._pack(buffer, all_rows=exhausted)
        if self._state["rows"] == 0:
            reasons = ", ".join(f"{r}: {n}" for r, n in counts["dropped"].items()) or "none"
            raise EmptyDataError(f"The stream gave no training sample: {counts['total']} read, all dropped (by "
                                 f"reason: {reasons}). Check the stage's `datasets` and `max_length`.")
        # The next pass starts at the stream's beginning, with the totals carried on.
        self._state = self._fresh_state(self._state["epoch"] + 1, self._state["rows"], counts)
        self._epoch = self._state["epoch"]

    def _encode(self, example: dict, position: int) -> dict | None:
        """The encoded sample, or None when the encoder drops it (counted by reason; raised when `strict`)."""
        out = self.encoder(example)
        if out["drop_reason"]:
            name = str(example.get(self.id_column, position))
            if self.strict:
                raise ValueError(f"Sample {name!r} (stream position {position}) is invalid: {out['drop_reason']} "
                                 f"({out.get('drop_detail', '')}). Fix or remove it, or set `strict_data=False` to "
                                 "skip bad samples and count them in the run summary.")
            counts = self._state["counts"]
            counts["dropped"][out["drop_reason"]] = counts["dropped"].get(out["drop_reason"], 0) + 1
            examples = counts["examples"].setdefault(out["drop_reason"], [])
            if len(examples) < 5:  # as `DropReport`: enough ids to find them
                examples.append(name)
            return None
        sample = {"input_ids": out["input_ids"], "labels": out["labels"], "images": _images(example),
                  "source_index": position, "sample_id": str(example.get(self.id_column, position))}
        return {"sample": sample, "length": int(out["length"]), "num_images": int(out["num_images"])}

    def _pack(self, buffer: dict[int, dict], all_rows: bool) -> list[list[int]]:
        """Best fit over the buffer; the fuller half of the rows (all at the stream's end), in the packer's order."""
        positions = sorted(buffer)
        # One seed per pack, a pure function of (seed, pass, pack number): a replay packs the same rows.
        seed = ((self.seed * 1_000_003 + self._state["epoch"]) * 1_000_003 + self._state["packs"]) % 2**32
        self._state["packs"] += 1
        packing = pack_best_fit_decreasing([buffer[p]["length"] for p in positions],
                                           [buffer[p]["num_images"] for p in positions], self.budget, seed=seed)
        unplaceable = packing.too_long + packing.too_many_images
        if unplaceable:  # the encoder drops these first; only a budget other than the encoder's reaches here
            raise ValueError(f"Samples at stream positions {[positions[i] for i in unplaceable][:5]} exceed the "
                             f"packing budget {self.budget}; give the encoder the same `max_length`/`max_images`.")
        rows = [[positions[i] for i in row] for row in packing.rows]
        if all_rows:
            return rows
        fill = [sum(buffer[p]["length"] for p in row) for row in rows]
        fullest = set(sorted(range(len(rows)), key=lambda r: (-fill[r], r))[: max(1, len(rows) // 2)])
        return [row for r, row in enumerate(rows) if r in fullest]

    def _record(self, pending, buffer, before, after_last, seq) -> None:
        """Note the state after the row just yielded: it is what `state_dict()` and a checkpoint save."""
        state = self._state
        state["rows"] += 1
        anchor = min(buffer) if buffer else seq
        state.update(stream=before[anchor] if buffer else after_last, anchor=anchor, read=seq,
                     buffered=sorted(buffer), pending=[list(row) for row in pending])
        self._history[state["rows"]] = json.dumps(state)
        while len(self._history) > _HISTORY:
            self._history.popitem(last=False)


def _empty_counts() -> dict:
    return {"total": 0, "kept": 0, "samples": 0, "tokens": 0, "images": 0, "dropped": {}, "examples": {}}


class StreamStateCallback(TrainerCallback):
    """Saves the stream's position with each checkpoint and restores it on resume (the one mechanism doing so).

    The state saved is that after the rows the checkpoint's steps trained: `global_step x rows per step`, where a
    step takes `train_batch_size x gradient_accumulation_steps` rows on each of `world_size` processes (accelerate
    hands every process its slice of each global batch of the one stream). It is written into
    `checkpoint-<step>/stream_state.json` when the Trainer decides to save and before it writes the checkpoint, so a
    checkpoint complete enough to resume from (`trainer_state.json` written) always holds it. The Trainer's own
    batch skipping is switched off (`ignore_data_skip`): it would skip the restored rows a second time.
    """

    def __init__(self, dataset: StreamingPackedDataset):
        self.dataset = dataset

    @staticmethod
    def rows_per_step(args) -> int:
        return args.train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)

    def on_train_begin(self, args, state, control, **kwargs):
        if args.dataloader_num_workers > 0:
            # Each worker would pack its own copy of the stream, out of this process's sight (no state to save).
            raise ValueError(f"A streamed stage packs in the main process; set `dataloader_num_workers: 0` (got "
                             f"{args.dataloader_num_workers}). Images are still decoded per batch by the collator.")
        if state.global_step == 0:
            return
        path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}", STREAM_STATE_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"Resuming a streamed stage at step {state.global_step} needs {path}, which the "
                                    "checkpoint lacks (written without streaming?). Restart the stage without "
                                    "`--resume`, or resume from a checkpoint of this streamed run.")
        with open(path) as f:
            saved = json.load(f)
        expected = state.global_step * self.rows_per_step(args)
        if saved["rows"] != expected:
            raise ValueError(f"{path} holds the stream after row {saved['rows']}, but step {state.global_step} at "
                             f"{self.rows_per_step(args)} rows per step means row {expected}: the batch size, "
                             "accumulation or process count changed since the checkpoint. Resume with the same ones.")
        self.dataset.load_state_dict(saved)
        logger.info("Stream restored after row %d (step %d) from %s", saved["rows"], state.global_step, path)

    def _save(self, args, state, control):
        if not control.should_save or not args.should_save:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        os.makedirs(folder, exist_ok=True)
        saved = self.dataset.state_after(state.global_step * self.rows_per_step(args))
        if saved["epoch"] > 0:
            logger.warning("The stream was read past its end before step %d; its resume is exact only when every "
                           "pass gave a whole number of batches (docs/streaming.md).", state.global_step)
        with open(os.path.join(folder, STREAM_STATE_FILE), "w") as f:
            json.dump(saved, f)

    def on_step_end(self, args, state, control, **kwargs):
        self._save(args, state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._save(args, state, control)


def trained_summary(dataset: StreamingPackedDataset, args, global_step: int) -> dict:
    """`dataset.summary` at the rows `global_step` steps trained (not those the loader read ahead), on every process
    together. A stage resumed at its last step trains none: its figures come from that checkpoint's saved state."""
    rows = global_step * StreamStateCallback.rows_per_step(args)
    saved = os.path.join(args.output_dir, f"checkpoint-{global_step}", STREAM_STATE_FILE)
    if rows not in dataset._history and os.path.exists(saved):
        with open(saved) as f:
            dataset.load_state_dict(json.load(f))
    return dataset.summary(rows)
