"""InfiMedSFTTrainer on the tiny InfiMed model: label masking, packed == unpacked, drop counts, strict mode, resume."""

import io
import json
import os

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from infimed.testing import tiny_model, tiny_processor
from infimed.training.collator import PACKING_STATS_KEY, DataCollatorForPackedVisionLanguageModeling
from infimed.training.samples import SampleEncoder
from infimed.training.sft_config import InfiMedSFTConfig
from infimed.training.sft_trainer import InfiMedSFTTrainer

NUM_IMAGE_TOKENS = 16  # the tiny preset's pretraining setting: keeps rows short and tests fast

FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "images": datasets.List(datasets.Image()),
    "messages": [{"role": datasets.Value("string"),
                  "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}]}],
})


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((64, 64, 3)) * 255).astype("uint8")).save(buf, format="PNG")
    return buf.getvalue()


def make_vqa_dataset(n: int = 24, seed: int = 0, corrupt: bool = False) -> datasets.Dataset:
    """Medical-VQA-shaped chat samples: 0-2 images, short answers next to longer reports; optionally 4 bad ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = int(rng.integers(0, 3))
        answer = "yes" if i % 3 else " ".join(["finding"] * int(rng.integers(3, 20)))
        rows.append({
            "id": f"s{i}",
            "images": [{"bytes": _png(seed * 1000 + i * 10 + j), "path": None} for j in range(k)],
            "messages": [
                {"role": "user", "content": [{"type": "image", "text": None}] * k
                 + [{"type": "text", "text": f"Is there a lesion in region {i}?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": answer}]},
            ],
        })
    if corrupt:
        rows[0]["images"] = [{"bytes": b"not an image", "path": None}]
        rows[0]["messages"][0]["content"] = [{"type": "image", "text": None}, {"type": "text", "text": "q?"}]
        rows[1]["messages"][1]["content"][0]["text"] = "  "
        rows[2]["images"] = []
        rows[2]["messages"][0]["content"] = [{"type": "image", "text": None}, {"type": "text", "text": "q?"}]
        rows[3]["messages"][1]["content"][0]["text"] = "report " * 400  # over max_length
    return datasets.Dataset.from_list(rows, features=FEATURES)


def _encoder(processor, max_length=256, assistant_only_loss=True):
    return SampleEncoder(processor=processor, max_length=max_length, assistant_only_loss=assistant_only_loss,
                         image_token_id=processor.image_token_id)


def _decoded_samples(dataset, processor):
    encoder = _encoder(processor)
    samples = []
    for example in dataset.cast_column("images", datasets.List(datasets.Image(decode=False))):
        out = encoder(example)
        assert out["drop_reason"] == ""
        samples.append({"input_ids": out["input_ids"], "labels": out["labels"], "images": example["images"]})
    return samples


@pytest.fixture(scope="module")
def processor():
    return tiny_processor(num_image_tokens=NUM_IMAGE_TOKENS)


def _model(**kw):
    model = tiny_model(num_image_tokens=NUM_IMAGE_TOKENS, **kw)
    return model


def test_labels_only_on_assistant_answer_and_never_on_images(processor):
    dataset = make_vqa_dataset(6)
    example = dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))[0]
    out = _encoder(processor)(example)
    ids, labels = torch.tensor(out["input_ids"]), torch.tensor(out["labels"])
    trained = processor.tokenizer.decode(ids[labels != -100])
    answer = example["messages"][1]["content"][0]["text"]
    assert trained == answer + "<|im_end|>"
    assert labels[0] == -100 and bool((labels[ids == processor.image_token_id] == -100).all())
    assert int((ids == processor.image_token_id).sum()) == NUM_IMAGE_TOKENS * len(example["images"])
    # pretraining mode: all text trains, images still never do
    all_text = _encoder(processor, assistant_only_loss=False)(example)
    all_labels = torch.tensor(all_text["labels"])
    assert bool((all_labels[1:][ids[1:] != processor.image_token_id] != -100).all())
    assert bool((all_labels[ids == processor.image_token_id] == -100).all())


@pytest.mark.upstream
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_and_grads_equal_token_weighted_unpacked(processor, attn):
    model = _model(attn_implementation=attn)
    samples = _decoded_samples(make_vqa_dataset(5, seed=1), processor)
    collator = DataCollatorForPackedVisionLanguageModeling(processor.image_processor, pad_token_id=0)
    batch = collator([samples[:3], samples[3:]])
    batch.pop(PACKING_STATS_KEY)
    model.zero_grad()
    packed = model(**batch, use_cache=False).loss
    packed.backward()
    packed_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    counts = [sum(label != -100 for label in s["labels"][1:]) for s in samples]
    reference = 0.0
    for sample, count in zip(samples, counts):
        alone = collator([[sample]])
        alone.pop(PACKING_STATS_KEY)
        reference = reference + model(**alone, use_cache=False).loss * count / sum(counts)
    reference.backward()
    torch.testing.assert_close(packed, reference, atol=1e-5, rtol=0)
    for name, param in model.named_parameters():
        if name in packed_grads:
            torch.testing.assert_close(packed_grads[name], param.grad, atol=1e-5, rtol=1e-4)
    assert any(n.startswith("model.vision_tower") for n in packed_grads)  # images really went through


@pytest.mark.upstream
def test_no_cross_sample_attention_and_image_order(processor):
    model = _model()
    samples = [s for s in _decoded_samples(make_vqa_dataset(8, seed=2), processor) if s["images"]][:3]
    collator = DataCollatorForPackedVisionLanguageModeling(processor.image_processor, pad_token_id=0)

    def logits(rows):
        batch = collator(rows)
        batch.pop(PACKING_STATS_KEY)
        batch.pop("labels")
        with torch.no_grad():
            return model(**batch).logits[0]  # default use_cache: the model must refuse a cache on packed rows

    base = logits([samples])
    # perturb only the first sample's image: its logits move, the others' do not
    changed = logits([[dict(samples[0], images=[{"bytes": _png(999), "path": None}] * len(samples[0]["images"]))]
                      + samples[1:]])
    n0 = len(samples[0]["input_ids"])
    assert not torch.allclose(base[:n0], changed[:n0])
    torch.testing.assert_close(base[n0:], changed[n0:], atol=1e-6, rtol=0)
    # swapping the order of samples keeps each sample's logits: images follow their placeholders
    swapped = logits([[samples[1], samples[0], samples[2]]])
    n1 = len(samples[1]["input_ids"])
    torch.testing.assert_close(swapped[:n1], base[n0:n0 + n1], atol=1e-5, rtol=0)
    torch.testing.assert_close(swapped[n1:n1 + n0], base[:n0], atol=1e-5, rtol=0)


@pytest.mark.flex
@pytest.mark.skipif(
    not torch.cuda.is_available() and os.environ.get("INFIMED_FLEX_TRAINING_ON_CPU") != "1",
    reason="Training through flex attention compiles its backward with inductor; on CPU with torch 2.13 that C++ "
    "compile fails intermittently (CppCompileError in torchinductor, seen in CI here). The forward contract is "
    "covered on CPU by tests/modeling/test_modeling.py; set INFIMED_FLEX_TRAINING_ON_CPU=1 to run this anyway.",
)
def test_packed_rows_with_flex_attention(processor):
    model = _model(attn_implementation="flex_attention")
    samples = _decoded_samples(make_vqa_dataset(4, seed=3), processor)
    collator = DataCollatorForPackedVisionLanguageModeling(processor.image_processor, pad_token_id=0)
    batch = collator([samples])
    batch.pop(PACKING_STATS_KEY)
    with torch.no_grad():
        packed = model(**batch).logits[0]
        start = 0
        for sample in samples:
            alone = collator([[sample]])
            alone.pop(PACKING_STATS_KEY)
            n = len(sample["input_ids"])
            torch.testing.assert_close(packed[start:start + n], model(**alone).logits[0], atol=1e-4, rtol=0)
            start += n


def _args(tmp_path, **kw):
    defaults = dict(output_dir=str(tmp_path / "out"), max_length=256, per_device_train_batch_size=2,
                    learning_rate=1e-3, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                    assistant_only_loss=True, seed=0, dataloader_num_workers=0,
                    gradient_checkpointing=False, bf16=False)
    defaults.update(kw)
    return InfiMedSFTConfig(**defaults)


def test_trainer_counts_dropped_samples_and_strict_mode_raises(tmp_path, processor):
    dataset = make_vqa_dataset(12, corrupt=True)
    trainer = InfiMedSFTTrainer(model=_model(), args=_args(tmp_path, num_train_epochs=1), train_dataset=dataset,
                                processing_class=processor)
    # s0's image bytes are corrupt: encoding never decodes them, the collator skips s0 while training
    assert trainer.dropped_samples == {"empty_assistant": 1, "image_mismatch": 1, "too_long": 1}
    summary = trainer.packing_summary["train"]
    assert summary["samples"] == 9 and summary["dropped"]["examples"]["image_mismatch"] == ["s2"]
    json.dumps(summary)  # goes into the run summary as is
    trainer.train()
    assert trainer.skipped_in_training == {"by_reason": {"bad_image": 1}, "examples": {"bad_image": ["s0"]}}
    with pytest.raises(ValueError, match=r"Sample 's1'.*empty_assistant"):
        InfiMedSFTTrainer(model=_model(), args=_args(tmp_path, strict_data=True), train_dataset=dataset,
                          processing_class=processor)


@pytest.mark.upstream
def test_trainer_loss_equals_unpacked_loss(tmp_path, processor):
    """The training path (TRL's fused LM head, token-weighted) gives the unpacked loss on a packed batch."""
    model = _model()
    trainer = InfiMedSFTTrainer(model=model, args=_args(tmp_path, prediction_loss_only=True),
                                train_dataset=make_vqa_dataset(10, seed=4), eval_dataset=make_vqa_dataset(6, seed=8),
                                processing_class=processor)
    rows = [trainer.train_dataset[i]["samples"] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(rows)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
        samples = [s for row in rows for s in row]
        counts = [sum(label != -100 for label in s["labels"][1:]) for s in samples]
        reference = 0.0
        for sample, count in zip(samples, counts):
            alone = trainer.data_collator([[sample]])
            alone.pop(PACKING_STATS_KEY)
            reference += float(model(**alone).loss) * count / sum(counts)
    assert abs(float(loss) - reference) < 1e-5
    assert trainer._metrics["eval" if not model.training else "train"]["packing_efficiency"]
    metrics = trainer.evaluate()  # the eval split is packed the same way
    assert trainer.packing_summary["eval"]["samples"] == 6 and metrics["eval_loss"] > 0


class _Recorder(InfiMedSFTTrainer):
    """Records which samples each optimisation step trains on (read from the batch, not the collator calls)."""

    seen: list

    def compute_loss(self, model, inputs, **kwargs):
        self.seen.append(list(inputs[PACKING_STATS_KEY]["source_indices"]))
        return super().compute_loss(model, inputs, **kwargs)


class _StopAt:
    def __init__(self, step):
        self.step = step

    def __call__(self):
        from transformers import TrainerCallback

        step = self.step

        class Stop(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step >= step:
                    control.should_training_stop = True

        return Stop()


def test_resume_continues_with_the_same_rows_in_the_same_order(tmp_path, processor):
    dataset = make_vqa_dataset(24, seed=5)
    common = dict(max_length=128, per_device_train_batch_size=1, max_steps=4, save_strategy="steps", save_steps=2)

    full = _Recorder(model=_model(), args=_args(tmp_path / "a", **common), train_dataset=dataset,
                     processing_class=processor)
    full.seen = []
    full.train()

    interrupted = _Recorder(model=_model(), args=_args(tmp_path / "b", **common), train_dataset=dataset,
                            processing_class=processor, callbacks=[_StopAt(2)()])
    interrupted.seen = []
    interrupted.train()
    resumed = _Recorder(model=_model(), args=_args(tmp_path / "b", **common), train_dataset=dataset,
                        processing_class=processor)
    resumed.seen = []
    resumed.train(resume_from_checkpoint=True)
    assert len(full.seen) == 4 and interrupted.seen == full.seen[:2]
    assert resumed.seen == full.seen[2:]
    assert len({tuple(s) for s in full.seen}) > 1  # the order is not trivially constant
