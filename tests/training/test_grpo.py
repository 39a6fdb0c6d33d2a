"""InfiMedGRPOTrainer and the `grpo` recipe stage on tiny InfiMed and Qwen2.5-VL models (CPU, offline)."""

import logging

import pytest
import torch
from datasets import Dataset
from PIL import Image

from infimed.core.answers import ANSWER_FORMAT_INSTRUCTION
from infimed.testing import tiny_model, tiny_processor
from infimed.training.grpo_config import InfiMedGRPOConfig
from infimed.training.grpo_trainer import InfiMedGRPOTrainer, prepare_grpo_dataset
from infimed.training.rewards import completion_text


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny matrices gain nothing from intra-op threads, and on a busy 2-core machine oversubscription made a GRPO
    # step ~10x slower; one thread keeps these tests fast and their timing stable.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _rows(n=8, size=64):
    rows = []
    for i in range(n):
        red = i % 2 == 0
        image = Image.new("RGB", (size, size), (200, 30, 30) if red else (30, 30, 200))
        rows.append({
            "id": f"s{i}",
            "images": [image],
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is the image red?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "yes" if red else "no"}]},
            ],
            "kind": "yes_no",
            "answer": "yes" if red else "no",
            "options": [],
        })
    return Dataset.from_list(rows)


def varied_reward(completions, **kwargs):
    """Differs between completions of one group, so advantages are non-zero and every step moves the policy."""
    return [float(len(completion_text(c)) % 5) for c in completions]


def _args(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4, max_completion_length=6,
        max_steps=2, learning_rate=1e-3, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True,
        bf16=False, gradient_checkpointing=False, disable_tqdm=True, seed=0,
    )
    kwargs.update(overrides)
    return InfiMedGRPOConfig(**kwargs)


def test_prepare_grpo_dataset_builds_prompts_from_messages():
    dataset = prepare_grpo_dataset(_rows(2), "Fmt.")
    assert "messages" not in dataset.column_names
    assert {"prompt", "answer", "kind", "options", "images"} <= set(dataset.column_names)
    prompt = dataset[0]["prompt"]
    assert [m["role"] for m in prompt] == ["user"]  # the gold assistant turn is not part of the prompt
    assert prompt[0]["content"][0] == {"type": "image"}  # Arrow's `text: None` is dropped for chat templates
    assert prompt[0]["content"][-1]["text"] == "\nFmt."
    with pytest.raises(ValueError, match="`prompt` column or a `messages` column"):
        prepare_grpo_dataset(Dataset.from_dict({"question": ["q"]}))


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="reward_funcs"):
        _args(tmp_path, reward_funcs=["fromat"])
    with pytest.raises(ValueError, match="num_image_tokens"):
        _args(tmp_path, num_image_tokens=0)
    assert _args(tmp_path).beta > 0  # InfiMed-RL keeps the KL term to the frozen reference on by default


def test_infimed_policy_trains_reference_stays_frozen(tmp_path):
    model = tiny_model()
    processor = tiny_processor()  # 64 image tokens per image by default; the run asks for 16
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.model.vision_tower.requires_grad_(False)
    args = _args(tmp_path, num_image_tokens=16, beta=0.1)
    trainer = InfiMedGRPOTrainer(model, reward_funcs=[varied_reward], args=args, train_dataset=_rows(),
                                 processing_class=processor)
    assert processor.num_image_tokens == 64 and trainer.processing_class.num_image_tokens == 16
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    trainer.train()

    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), initial[n])}
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert not any(n.startswith("model.vision_tower.") for n in changed)
    assert any(n.startswith("model.language_model.") for n in changed)
    # The reference is the starting policy, bit for bit, after training.
    for name, param in trainer.ref_model.named_parameters():
        assert torch.equal(param.detach(), initial[name]), name
        assert not param.requires_grad
    logged = [e for e in trainer.state.log_history if "kl" in e]
    assert len(logged) == 2 and logged[-1]["kl"] > 0  # the policy moved away from the reference


def test_infimed_generation_and_scoring_use_the_requested_image_tokens(tmp_path):
    model = tiny_model()
    calls, encode = [], model.model.get_image_features

    def recording(pixel_values, num_image_tokens=None):
        calls.append(num_image_tokens)
        return encode(pixel_values, num_image_tokens)

    model.model.get_image_features = recording  # every image encoding, whoever calls it
    args = _args(tmp_path, num_image_tokens=4, beta=0.0, max_steps=1)
    trainer = InfiMedGRPOTrainer(model, reward_funcs=[varied_reward], args=args, train_dataset=_rows(4),
                                 processing_class=tiny_processor())
    assert trainer.ref_model is None  # beta = 0: no reference model at all
    trainer.train()
    assert len(calls) >= 2 and set(calls) == {4}  # generation prefill and the training forward (at least)
    with pytest.raises(ValueError):
        InfiMedGRPOTrainer(tiny_model(), reward_funcs=[varied_reward], args=_args(tmp_path, num_image_tokens=5),
                           train_dataset=_rows(4), processing_class=tiny_processor())


def test_batch_mixing_text_only_and_image_prompts(tmp_path):
    rows = _rows(2).to_list()
    rows[1]["images"] = []
    rows[1]["messages"][0]["content"] = [{"type": "text", "text": "Is a normal heart rate below 100?"}]
    dataset = Dataset.from_list(rows)
    # 8 completions per step = both prompts x 4 generations: every batch mixes a text-only and an image prompt.
    args = _args(tmp_path, per_device_train_batch_size=8, num_image_tokens=16, max_steps=1)
    trainer = InfiMedGRPOTrainer(tiny_model(), reward_funcs=[varied_reward], args=args, train_dataset=dataset,
                                 processing_class=tiny_processor())
    trainer.train()
    assert trainer.state.global_step == 1


def test_lora_policy_with_adapter_disabled_reference(tmp_path):
    from peft import LoraConfig

    model = tiny_model()
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)",
                             task_type="CAUSAL_LM")
    trainer = InfiMedGRPOTrainer(model, reward_funcs=[varied_reward], args=_args(tmp_path, num_image_tokens=16),
                                 train_dataset=_rows(), processing_class=tiny_processor(), peft_config=peft_config)
    assert trainer.ref_model is None  # with PEFT the reference is the base model, adapters disabled
    trainer.train()  # image tokens reach the model under LoRA's wrapper too (16 here, 64 in the checkpoint)
    named = dict(trainer.model.named_parameters())
    assert any(n.endswith("lora_B.default.weight") and p.abs().sum() > 0 for n, p in named.items())
    for name, param in trainer.model.get_base_model().named_parameters():
        if "lora_" not in name:
            original = name.replace(".base_layer", "")
            assert torch.equal(param.detach(), base[original]), name


def test_reward_names_build_the_default_rewards(tmp_path):
    args = _args(tmp_path, reward_funcs=["format", "accuracy", "length"], reward_weights=[1.0, 1.0, 0.1])
    trainer = InfiMedGRPOTrainer(tiny_model(), args=args, train_dataset=_rows(4), processing_class=tiny_processor())
    assert trainer.reward_func_names == ["format_reward", "accuracy_reward", "length_penalty"]
    assert trainer.train_dataset[0]["prompt"][0]["content"][-1]["text"].endswith(ANSWER_FORMAT_INSTRUCTION)


# ---- Qwen2.5-VL (the InfiMed-SFT-3B / RL-3B backbone), built from a config with a byte-level tokenizer ----

_QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
_QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_qwen2_5_vl():
    """(model, processor): a 2-layer Qwen2.5-VL and an image-only processor (no torchvision video processor)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwenProcessor(Qwen2_5_VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    byte_vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    raw = Tokenizer(models.BPE(vocab=byte_vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(_QWEN_SPECIAL)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    # 56 px = 4x4 patches of 14 px, merged 2x2: 4 image tokens per image.
    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2,
                                               temporal_patch_size=2)
    processor = ImageOnlyQwenProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                       chat_template=_QWEN_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
                         bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>")),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[0]),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.bos_token_id = None
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    return model, processor


def test_qwen2_5_vl_policy_trains_reference_stays_frozen(tmp_path, caplog):
    model, processor = tiny_qwen2_5_vl()
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = _args(tmp_path, num_image_tokens=16, beta=0.1, max_completion_length=8)
    with caplog.at_level(logging.WARNING, logger="infimed.training.grpo_trainer"):
        trainer = InfiMedGRPOTrainer(model, reward_funcs=[varied_reward], args=args, train_dataset=_rows(8, size=56),
                                     processing_class=processor)
    assert "num_image_tokens=16` is ignored" in caplog.text  # Qwen2.5-VL's token count follows the image size
    assert trainer.num_image_tokens is None
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), initial[n])]
    assert any(n.startswith("model.language_model.") for n in changed)
    assert all(torch.equal(p.detach(), initial[n]) for n, p in trainer.ref_model.named_parameters())
