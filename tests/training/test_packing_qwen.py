"""Packed rows on a tiny Qwen2.5-VL (M-RoPE): per-sample (4, B, S) positions give exactly the unpacked loss."""

import pytest
import torch
from PIL import Image

from infimed.training.collator import PACKING_STATS_KEY, DataCollatorForPackedVisionLanguageModeling, _load
from infimed.training.sft_trainer import find_rope_index_fn

pytestmark = pytest.mark.upstream  # `make test-latest` runs these against the newest releases

IMAGE, VSTART, VEND = 120, 122, 123


def build_tiny_qwen():
    """A seeded fp32 2-layer Qwen2.5-VL and a matching PIL image processor (16-32 px images), built offline."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0,
                         rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1e4}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=32, window_size=8,
                           fullatt_block_indexes=[1]),
        image_token_id=IMAGE, video_token_id=121, vision_start_token_id=VSTART, vision_end_token_id=VEND,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).float().eval()
    # 16x16 px max: a square image is a 4x4 patch grid, 2x2 = 4 tokens after the 2x2 merge; a 16x32 one has 8
    image_processor = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                                               min_pixels=64, max_pixels=512)
    return model, image_processor


@pytest.fixture(scope="module")
def qwen():
    return build_tiny_qwen()


def _sample(rng, image_processor, sizes, prompt_len, answer_len):
    images = [Image.fromarray((torch.rand(h, w, 3, generator=rng) * 255).to(torch.uint8).numpy()) for h, w in sizes]
    ids = torch.randint(3, 100, (prompt_len,), generator=rng).tolist()
    for im in images:
        grid = image_processor(images=[im], return_tensors="pt")["image_grid_thw"][0]
        ids += [VSTART] + [IMAGE] * int(grid.prod() // 4) + [VEND]
    answer = torch.randint(3, 100, (answer_len,), generator=rng).tolist()
    return {"input_ids": ids + answer, "labels": [-100] * len(ids) + answer, "images": images}


def _samples(image_processor):
    rng = torch.Generator().manual_seed(1)
    return [
        _sample(rng, image_processor, [(16, 16)], 5, 3),
        _sample(rng, image_processor, [(16, 32), (16, 16)], 4, 6),  # two images, one non-square (2x4 grid)
        _sample(rng, image_processor, [], 6, 4),  # text-only
        _sample(rng, image_processor, [(32, 16)], 3, 2),
    ]


def _alone(model, image_processor, sample):
    ids = torch.tensor([sample["input_ids"]])
    kwargs = {}
    if sample["images"]:
        kwargs = dict(image_processor(images=sample["images"], return_tensors="pt"))
    out = model(input_ids=ids, labels=torch.tensor([sample["labels"]]), mm_token_type_ids=(ids == IMAGE).int(),
                use_cache=False, **kwargs)
    return out


def test_mrope_positions_are_per_sample(qwen):
    model, image_processor = qwen
    samples = _samples(image_processor)
    collator = DataCollatorForPackedVisionLanguageModeling(image_processor, pad_token_id=0, image_token_id=IMAGE,
                                                           rope_index_fn=find_rope_index_fn(model))
    batch = collator([samples[:2], samples[2:]])
    pos = batch["position_ids"]
    assert pos.shape == (4, 2, batch["input_ids"].shape[1])
    start = 0
    for sample in samples[:2]:
        n = len(sample["input_ids"])
        ids = torch.tensor([sample["input_ids"]])
        expected, _ = model.model.get_rope_index(ids, (ids == IMAGE).int(), image_processor(
            images=sample["images"], return_tensors="pt")["image_grid_thw"])
        assert torch.equal(pos[1:, 0, start:start + n], expected[:, 0])
        assert pos[0, 0, start:start + n].tolist() == list(range(n))
        start += n


def test_packed_loss_and_grads_equal_token_weighted_unpacked(qwen):
    model, image_processor = qwen
    samples = _samples(image_processor)
    collator = DataCollatorForPackedVisionLanguageModeling(image_processor, pad_token_id=0, image_token_id=IMAGE,
                                                           rope_index_fn=find_rope_index_fn(model))
    batch = collator([samples[:2], samples[2:]])
    batch.pop(PACKING_STATS_KEY)
    model.zero_grad()
    packed = model(**batch, use_cache=False).loss
    packed.backward()
    packed_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    counts = [sum(l != -100 for l in s["labels"][1:]) for s in samples]
    total = sum(counts)
    reference = sum(_alone(model, image_processor, s).loss * c / total for s, c in zip(samples, counts))
    reference.backward()
    torch.testing.assert_close(packed, reference, atol=1e-5, rtol=0)
    assert packed_grads.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for name, grad in packed_grads.items():
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad, atol=1e-5, rtol=1e-4)


def test_no_cross_sample_attention(qwen):
    model, image_processor = qwen
    samples = _samples(image_processor)
    collator = DataCollatorForPackedVisionLanguageModeling(image_processor, pad_token_id=0, image_token_id=IMAGE,
                                                           rope_index_fn=find_rope_index_fn(model))

    def logits(rows):
        batch = collator(rows)
        batch.pop(PACKING_STATS_KEY)
        batch.pop("labels")
        with torch.no_grad():
            return model(**batch, use_cache=False).logits

    base = logits([samples])
    perturbed = dict(samples[0], input_ids=[(t + 7) % 100 + 3 if t < 100 else t for t in samples[0]["input_ids"]])
    changed = logits([[perturbed] + samples[1:]])
    n0 = len(samples[0]["input_ids"])
    assert not torch.allclose(base[0, :n0], changed[0, :n0])
    torch.testing.assert_close(base[0, n0:], changed[0, n0:], atol=1e-6, rtol=0)
    # and each packed sample's logits equal its logits alone
    start = 0
    for s in samples:
        n = len(s["input_ids"])
        with torch.no_grad():
            alone = _alone(model, image_processor, s).logits[0]
        torch.testing.assert_close(base[0, start:start + n], alone, atol=1e-5, rtol=0)
        start += n


def test_trl_fused_loss_path_takes_mrope_positions():
    """The trainer's loss path (TRL's fused LM head through `model.model`) gives the model's own packed loss."""
    from trl.trainer.utils import add_fused_lm_head

    model, image_processor = build_tiny_qwen()
    samples = _samples(image_processor)
    collator = DataCollatorForPackedVisionLanguageModeling(image_processor, pad_token_id=0, image_token_id=IMAGE,
                                                           rope_index_fn=find_rope_index_fn(model))
    batch = collator([samples[:2], samples[2:]])
    batch.pop(PACKING_STATS_KEY)
    with torch.no_grad():
        reference = model(**batch, use_cache=False).loss
        add_fused_lm_head(model)
        fused = model(**batch, fused_lm_head=True).loss
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=0)


def test_packed_equals_unpacked_through_the_sft_trainer_on_the_tiny_qwen_preset(tmp_path):
    """`InfiMedSFTTrainer` on a Qwen2.5-VL (the `tiny-qwen2.5-vl` preset): a packed batch's loss and gradients,
    computed by the trainer's own loss path, equal the token-weighted unpacked ones; its M-RoPE positions restart per
    sample and equal each sample's own `get_rope_index`."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from infimed.core.composition import init_checkpoint
    from infimed.training.sft_config import InfiMedSFTConfig
    from infimed.training.sft_trainer import InfiMedSFTTrainer
    from tests.training.test_sft import make_vqa_dataset

    init_checkpoint("tiny-qwen2.5-vl", str(tmp_path / "init"), seed=0)
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "init").float()
    processor = AutoProcessor.from_pretrained(tmp_path / "init")
    args = InfiMedSFTConfig(output_dir=str(tmp_path / "out"), max_length=160, packing=True, use_cpu=True,
                            report_to=[], per_device_train_batch_size=2, gradient_checkpointing=False,
                            dataloader_num_workers=0)
    trainer = InfiMedSFTTrainer(model=model, args=args, train_dataset=make_vqa_dataset(12),
                                processing_class=processor)
    rows = [trainer.train_dataset[i] for i in range(2)]
    samples = [s for row in rows for s in row["samples"]]
    assert max(len(row["samples"]) for row in rows) > 1 and any(s["images"] for s in samples)  # really packed
    batch = trainer.data_collator(rows)
    image_token = processor.image_token_id

    # M-RoPE positions (4, B, S): text positions and the three rope rows restart at each sample of a row.
    assert batch["position_ids"].shape == (4, 2, batch["input_ids"].shape[1])
    for b, row in enumerate(rows):
        start = 0
        for sample in row["samples"]:
            ids = torch.tensor([sample["input_ids"]])
            n = ids.shape[1]
            grids = (processor.image_processor(images=[_load(im) for im in sample["images"]],
                                               return_tensors="pt")["image_grid_thw"] if sample["images"] else None)
            expected, _ = model.model.get_rope_index(ids, (ids == image_token).int(), grids)
            assert torch.equal(batch["position_ids"][1:, b, start:start + n], expected[:, 0])
            assert batch["position_ids"][0, b, start:start + n].tolist() == list(range(n))
            start += n

    model.train()
    model.zero_grad()
    packed = trainer.compute_loss(model, dict(batch))
    packed.backward()
    packed_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    counts = [sum(label != -100 for label in s["labels"][1:]) for s in samples]
    total = sum(counts)
    reference = 0
    for sample, count in zip(samples, counts):
        ids = torch.tensor([sample["input_ids"]])
        images = (dict(processor.image_processor(images=[_load(im) for im in sample["images"]], return_tensors="pt"))
                  if sample["images"] else {})
        out = model(input_ids=ids, labels=torch.tensor([sample["labels"]]),
                    mm_token_type_ids=(ids == image_token).int(), use_cache=False, **images)
        reference = reference + out.loss * count / total
    reference.backward()
    torch.testing.assert_close(packed, reference, atol=1e-5, rtol=0)
    assert packed_grads.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for name, grad in packed_grads.items():
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad, atol=1e-5, rtol=1e-4)
