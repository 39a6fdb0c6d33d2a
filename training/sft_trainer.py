"""`InfiMedSFTTrainer`: TRL's `SFTTrainer` with multimodal sequence packing.

    trainer = InfiMedSFTTrainer(model=model, args=InfiMedSFTConfig(output_dir="out", max_length=2048),
                                train_dataset=dataset, processing_class=processor)   # dataset: messages + images
    trainer.train()

TRL 1.16 refuses `packing=True` on vision datasets with a single check on `args.packing` in `SFTTrainer.__init__`
(it has no multimodal packer). This trainer hides the flag from that check only (`trl_compat.hidden_from_trl_init`,
checked against TRL's source by tests/training/test_trl_compat.py), lets TRL set up everything else
(model, PEFT, chat template, metrics), then replaces the training data by packed rows (`PackedDataset`) and the
collator by `DataCollatorForPackedVisionLanguageModeling`. The loss path is TRL's own (fused LM head,
`num_items_in_batch`-weighted), so a packed batch gives the token-weighted loss of its samples.

Images are decoded by the collator, in the DataLoader workers (`dataloader_num_workers`). Samples it skips for an
image that will not decode come back inside the batch; `compute_loss` pops and counts them, and `train()` sums them
over ranks into `trainer.skipped_in_training` (docs/data-loading.md).

On CPU a model on `sdpa` is switched to `sdpa_varlen` (sdpa per packed sample, no dense block mask; equal outputs),
which is logged (docs/packing.md).
"""

from __future__ import annotations

import logging

import datasets
import torch
from accelerate.utils import gather_object
from trl import SFTTrainer

from infimed.core.datasets import undecoded_images
from infimed.modeling import SDPA_VARLEN

from .collator import PACKING_STATS_KEY, DataCollatorForPackedVisionLanguageModeling
from .packed_dataset import build_packed_dataset
from .packing import PackingBudget
from .samples import EXAMPLES_PER_REASON, SampleEncoder
from .sft_config import InfiMedSFTConfig
from .streaming import StreamingPackedDataset, StreamStateCallback
from .trl_compat import hidden_from_trl_init

__all__ = ["InfiMedSFTTrainer", "find_rope_index_fn"]

logger = logging.getLogger(__name__)


def _is_vision_dataset(dataset) -> bool:
    columns = getattr(dataset, "column_names", None)
    if columns is None:
        return False
    if isinstance(columns, dict):  # DatasetDict-like
        columns = next(iter(columns.values()))
    return "images" in columns or "image" in columns


def find_rope_index_fn(model):
    """The model's M-RoPE `get_rope_index` (Qwen2-VL family), or `None` for 1-D RoPE models such as InfiMed."""
    if hasattr(model, "get_base_model"):  # PEFT wrapper
        model = model.get_base_model()
    inner = getattr(model, "model", model)
    return getattr(inner, "get_rope_index", None)


class InfiMedSFTTrainer(SFTTrainer):
    """`SFTTrainer` that packs vision-language datasets (`messages` + `images`) when `args.packing` is set.

    After construction `trainer.packing_summary` holds, per split, the packing figures and the dropped samples by
    reason (also logged). After `train()`, `trainer.skipped_in_training` holds the samples the collator skipped
    (images that would not decode), by reason with a few ids, summed over ranks. Text-only datasets take TRL's own
    packing path unchanged.
    """

    _tag_names = ["trl", "sft", "infimed"]

    def __init__(self, model, args: InfiMedSFTConfig | None = None, data_collator=None, train_dataset=None,
                 eval_dataset=None, processing_class=None, **kwargs):
        if args is None:
            raise ValueError("Pass an `InfiMedSFTConfig` as `args` (its `output_dir` and `max_length` are needed).")
        self._multimodal_packing = bool(args.packing) and _is_vision_dataset(train_dataset)
        if self._multimodal_packing and data_collator is not None:
            raise ValueError(
                "Multimodal packing builds its own collator; do not pass `data_collator`, or set `packing=False`."
            )
        eval_packing = args.packing if args.eval_packing is None else args.eval_packing
        if self._multimodal_packing and not isinstance(args, InfiMedSFTConfig):
            raise TypeError(f"Multimodal packing needs an `InfiMedSFTConfig`, got `{type(args).__name__}`.")
        if self._multimodal_packing and eval_dataset is not None and not eval_packing:
            raise ValueError(
                "`eval_packing=False` with packed multimodal training is not supported: eval batches use the same "
                "packed collator. Leave `eval_packing` unset (or True)."
            )
        if self._multimodal_packing:
            # TRL peeks at the first sample; a corrupt image there must be counted, not crash the decode.
            train_dataset = undecoded_images(train_dataset, columns=["images"])
            if isinstance(eval_dataset, dict):
                eval_dataset = {k: undecoded_images(v, columns=["images"]) for k, v in eval_dataset.items()}
            elif eval_dataset is not None:
                eval_dataset = undecoded_images(eval_dataset, columns=["images"])
        # The one check TRL 1.16 makes against vision packing, hidden from its constructor only.
        with hidden_from_trl_init(args, **({"packing": False} if self._multimodal_packing else {})):
            super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                             eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)
        self.packing_summary: dict[str, dict] = {}
        # This rank's collator skips during training: reason -> count, and reason -> a few sample ids.
        self._skip_counts: dict[str, int] = {}
        self._skip_examples: dict[str, list[str]] = {}
        self.skipped_in_training: dict = {"by_reason": {}, "examples": {}}
        if not self._multimodal_packing:
            return

        unwrapped = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        image_token_id = getattr(self.processing_class, "image_token_id", None)
        if image_token_id is None:
            image_token_id = getattr(unwrapped.config, "image_token_id", None)
        encoder = SampleEncoder(
            processor=self.processing_class,
            max_length=args.max_length,
            assistant_only_loss=args.assistant_only_loss,
            image_token_id=image_token_id,
            max_images=args.max_images_per_row,
            chat_template=self.chat_template,
        )
        budget = PackingBudget(max_tokens=args.max_length, max_images=args.max_images_per_row)
        seed = args.seed if args.packing_seed is None else args.packing_seed

        def pack(dataset, name):
            with self.accelerator.main_process_first():
                packed = build_packed_dataset(dataset, encoder, budget, seed=seed, strict=args.strict_data,
                                              num_proc=args.dataset_num_proc)
            self.packing_summary[name] = packed.summary()
            logger.info("Packed %s split: %s", name, self.packing_summary[name])
            return packed

        if isinstance(train_dataset, datasets.IterableDataset):
            # A streamed source (`streaming: true`): packed on the fly from a buffer; its position is saved in each
            # checkpoint and restored by the callback, so the Trainer must not skip batches too (docs/streaming.md).
            self.train_dataset = StreamingPackedDataset(train_dataset, encoder, budget, seed=seed,
                                                        buffer_size=args.packing_buffer_size, strict=args.strict_data)
            self.add_callback(StreamStateCallback(self.train_dataset))
            args.ignore_data_skip = True
        else:
            self.train_dataset = pack(train_dataset, "train")
        if isinstance(eval_dataset, dict):
            self.eval_dataset = {k: pack(v, f"eval_{k}") for k, v in eval_dataset.items()}
        elif eval_dataset is not None:
            self.eval_dataset = pack(eval_dataset, "eval")
        attn = str(getattr(unwrapped.config, "_attn_implementation", None) or "")
        if (attn == "sdpa" and args.device.type == "cpu" and not args.torch_compile
                and hasattr(unwrapped, "set_attn_implementation")):
            # With sdpa a packed row gets a dense (S, S) block mask, so attention costs as for one S-token sequence;
            # sdpa_varlen runs sdpa per sample instead, with equal outputs (docs/packing.md). On CPU only: on GPU,
            # flash/flex already avoid the mask, and per-sample sdpa there is not measured.
            unwrapped.set_attn_implementation(SDPA_VARLEN)
            attn = SDPA_VARLEN
            logger.info("Packed rows on CPU: attention switched from sdpa to %s (sdpa per packed sample, no dense "
                        "block mask; same outputs). `trainer.model.set_attn_implementation('sdpa')` after the "
                        "trainer is built restores it.", SDPA_VARLEN)
        self.data_collator = DataCollatorForPackedVisionLanguageModeling(
            image_processor=getattr(self.processing_class, "image_processor", None),
            pad_token_id=self._tokenizer.pad_token_id,
            image_token_id=image_token_id,
            rope_index_fn=find_rope_index_fn(self.model),
            pad_to_multiple_of=args.pad_to_multiple_of,
            flatten="flash" in attn,  # flash-attention varlen finds samples only inside one flattened row
            max_length=args.max_length,
            strict=args.strict_data,
        )
        # Logged once, with the first training log (TRL clears its metric buffers after each log).
        for reason, n in self.dropped_samples.items():
            self._metrics["train"][f"dropped_{reason}"].append(float(n))
        if args.dataloader_num_workers == 0:
            logger.info("Images are decoded in the training process (`dataloader_num_workers=0`); set "
                        "`dataloader_num_workers` (e.g. 4 per GPU) to decode them in parallel with the steps.")

    def _set_signature_columns_if_needed(self):
        # Items of a `PackedDataset` carry one key, "samples"; Trainer's column filter must keep it.
        if self._multimodal_packing:
            self._signature_columns = ["samples"]
        else:
            super()._set_signature_columns_if_needed()

    @property
    def dropped_samples(self) -> dict[str, int]:
        """Dropped samples by reason, summed over the packed splits."""
        totals: dict[str, int] = {}
        for summary in self.packing_summary.values():
            for reason, n in summary["dropped"]["by_reason"].items():
                totals[reason] = totals.get(reason, 0) + n
        return totals

    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        self._gather_skips()  # every rank calls `train`, so every rank joins the gather
        return result

    def _gather_skips(self) -> None:
        # Every rank's counts (each ran its own collator, in its own workers), summed; ids up to a few per reason.
        by_reason: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        for counts, ids in gather_object([(self._skip_counts, self._skip_examples)]):
            for reason, n in counts.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
            for reason, names in ids.items():
                kept = examples.setdefault(reason, [])
                kept.extend([n for n in names if n not in kept][: EXAMPLES_PER_REASON - len(kept)])
        self.skipped_in_training = {"by_reason": by_reason, "examples": examples}

    def _count_skips(self, skipped: dict[str, list[str]]) -> None:
        for reason, names in skipped.items():
            self._skip_counts[reason] = self._skip_counts.get(reason, 0) + len(names)
            ids = self._skip_examples.setdefault(reason, [])
            ids.extend([n for n in dict.fromkeys(names) if n not in ids][: EXAMPLES_PER_REASON - len(ids)])
            self._metrics["train"][f"skipped_{reason}"].append(float(self._skip_counts[reason]))
            logger.warning("Skipped %d sample(s) during training (%s): %s; %d so far on this rank.", len(names),
                           reason, ", ".join(names[:EXAMPLES_PER_REASON]), self._skip_counts[reason])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        stats = inputs.pop(PACKING_STATS_KEY, None)
        if stats is not None and stats.get("skipped") and self.model.training:
            self._count_skips(stats["skipped"])
        if stats is not None and stats["samples"] == 0:
            # Every sample of the batch was skipped: the collator sent one unlabelled pad token. The step still runs
            # a forward and a backward (other ranks wait for this one's gradients), with a loss of exactly zero.
            inputs.pop("labels", None)
            outputs = model(**inputs)
            loss = outputs.logits.float().sum() * 0.0
            return (loss, outputs) if return_outputs else loss
        if stats is not None:
            mode = "train" if self.model.training else "eval"
            # Per-step figures: real tokens / token slots of the rows' budget, images and samples per row.
            slots = stats.get("budget_slots") or stats["slots"]
            self._metrics[mode]["packing_efficiency"].append(stats["real_tokens"] / max(slots, 1))
            self._metrics[mode]["images_per_row"].append(stats["images"] / max(stats["rows"], 1))
            self._metrics[mode]["samples_per_row"].append(stats["samples"] / max(stats["rows"], 1))
        counted_before = self._total_train_tokens
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if stats is not None and self.model.training:
            # TRL counts `position_ids.size(1)` tokens per rank (one flattened row); packed batches know their real
            # token count, which also holds for (B, S) rows and M-RoPE's (4, B, S) positions.
            device = inputs["input_ids"].device
            real = self.accelerator.gather_for_metrics(torch.tensor(stats["real_tokens"], device=device)).sum()
            self._total_train_tokens = counted_before + int(real.item())
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return out
