"""Lazy images: encoding gives the ids a decoded image gives without decoding any; the collator skips (and the stage
summary counts) samples whose image will not decode; the encoding is cached across processes."""

import io
import json
import os
import subprocess
import sys
import textwrap

import datasets
import numpy as np
import pytest
from PIL import Image

from infimed.core.composition import _tiny_qwen_processor
from infimed.testing import tiny_processor
from infimed.training import samples as samples_module
from infimed.training import sft_trainer
from infimed.training.collator import PACKING_STATS_KEY, DataCollatorForPackedVisionLanguageModeling
from infimed.training.recipe import recipe_from_dict, run_recipe
from infimed.training.samples import SampleEncoder, encode_dataset
from tests.training.test_distributed_train import _torchrun
from tests.training.test_sft import FEATURES, NUM_IMAGE_TOKENS, _args, _model, make_vqa_dataset

PROMPT = [{"type": "text", "text": "What is shown?"}]


def _png(height, width, seed=0) -> bytes:
    buf = io.BytesIO()
    pixels = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype("uint8")
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _row(sample_id, images, answer="a small lesion"):
    return {"id": sample_id, "images": images,
            "messages": [{"role": "user", "content": [{"type": "image", "text": None}] * len(images) + PROMPT},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}


def _undecoded(dataset):
    return dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))


@pytest.fixture(scope="module")
def processor():
    return tiny_processor(num_image_tokens=NUM_IMAGE_TOKENS)


@pytest.mark.parametrize("assistant_only_loss", [True, False])
def test_infimed_ids_and_labels_equal_the_decoding_path(processor, assistant_only_loss):
    kw = dict(processor=processor, max_length=256, assistant_only_loss=assistant_only_loss,
              image_token_id=processor.image_token_id)
    lazy, decoding = SampleEncoder(**kw), SampleEncoder(**kw, decode_images=True)
    assert lazy._stand_in is not None and decoding._stand_in is None
    examples = list(_undecoded(make_vqa_dataset(10, seed=2)))
    assert {len(ex["images"]) for ex in examples} == {0, 1, 2}
    for example in examples:
        assert lazy(example) == decoding(example)


def test_qwen_ids_follow_each_image_header_size():
    processor = _tiny_qwen_processor()
    kw = dict(processor=processor, max_length=4096, image_token_id=processor.image_token_id)
    lazy, decoding = SampleEncoder(**kw), SampleEncoder(**kw, decode_images=True)
    sizes = [[(64, 64)], [(32, 200), (90, 40)], [(500, 700)], []]
    rows = [_row(f"q{i}", [{"bytes": _png(h, w, i), "path": None} for h, w in s]) for i, s in enumerate(sizes)]
    lengths = []
    for example in _undecoded(datasets.Dataset.from_list(rows, features=FEATURES)):
        out = lazy(example)
        assert out == decoding(example) and out["drop_reason"] == ""
        lengths.append(out["length"])
    assert len(set(lengths)) == len(lengths)  # the image sizes really change the token counts


@pytest.mark.parametrize("which", ["infimed", "qwen"])
def test_encoding_decodes_no_image(processor, monkeypatch, which):
    if which == "qwen":
        processor = _tiny_qwen_processor()

    dataset = make_vqa_dataset(8, seed=1)

    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded while encoding")

    monkeypatch.setattr(Image.Image, "load", refuse)
    monkeypatch.setattr(samples_module, "load_image", refuse)
    encoder = SampleEncoder(processor=processor, max_length=4096, image_token_id=processor.image_token_id)
    kept, report = encode_dataset(dataset, encoder)
    assert report.dropped == 0 and len(kept) == 8 and sum(kept["num_images"]) > 0


def test_missing_images_are_dropped_at_encoding_corrupt_ones_are_not(processor, tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_png(16, 16))
    truncated = {"bytes": _png(32, 32)[:60], "path": None}  # the header survives, the pixel data does not
    rows = [_row("ok", [{"bytes": None, "path": str(good)}]),
            _row("gone", [{"bytes": None, "path": str(tmp_path / "nope.png")}]),
            _row("cut", [truncated]),
            _row("empty", [{"bytes": b"", "path": None}])]
    encoder = SampleEncoder(processor=processor, max_length=256, image_token_id=processor.image_token_id)
    kept, report = encode_dataset(datasets.Dataset.from_list(rows, features=FEATURES), encoder)
    assert report.counts == {"bad_image": 2} and report.examples == {"bad_image": ["gone", "empty"]}
    assert kept["sample_id"] == ["ok", "cut"]


def _sample(ids, image, name):
    return {"input_ids": ids, "labels": [-100] + ids[1:], "images": [image], "source_index": 0, "sample_id": name}


def test_collator_skips_a_sample_whose_image_will_not_decode_and_keeps_its_row(processor):
    collator = DataCollatorForPackedVisionLanguageModeling(image_processor=processor.image_processor,
                                                           pad_token_id=0)
    good = {"bytes": _png(16, 16), "path": None}
    cut = {"bytes": _png(32, 32)[:60], "path": None}
    batch = collator([[_sample([5, 6, 7], good, "a"), _sample([8, 9], cut, "b")], [_sample([4, 4], cut, "c")]])
    assert batch["input_ids"].tolist() == [[5, 6, 7]] and batch["pixel_values"].shape[0] == 1
    stats = batch[PACKING_STATS_KEY]
    assert stats["skipped"] == {"bad_image": ["b", "c"]} and stats["samples"] == 1 and stats["rows"] == 1
    strict = DataCollatorForPackedVisionLanguageModeling(image_processor=processor.image_processor, pad_token_id=0,
                                                         strict=True)
    with pytest.raises(ValueError, match=r"Sample 'b' is invalid: bad_image"):
        strict([[_sample([5, 6, 7], good, "a"), _sample([8, 9], cut, "b")]])


def test_a_batch_with_every_sample_bad_is_a_zero_loss_step(processor, tmp_path):
    trainer = sft_trainer.InfiMedSFTTrainer(model=_model(), args=_args(tmp_path), train_dataset=make_vqa_dataset(4),
                                processing_class=processor)
    cut = {"bytes": _png(32, 32)[:60], "path": None}
    batch = trainer.data_collator([[_sample([5, 6, 7], cut, "x")]])
    assert batch["input_ids"].tolist() == [[processor.tokenizer.pad_token_id]] and "pixel_values" not in batch
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    assert float(loss) == 0.0
    assert all(p.grad is None or not p.grad.any() for p in trainer.model.parameters())
    assert trainer._skip_counts == {"bad_image": 1}


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory):
    """Twelve good samples plus a truncated PNG ("cut") and a path to no file ("gone"), images as file paths."""
    root = tmp_path_factory.mktemp("bad")
    paths = []
    for i in range(13):
        paths.append(root / f"{i}.png")
        paths[-1].write_bytes(_png(16, 16, i))
    paths[12].write_bytes(_png(32, 32)[:60])  # the header survives, the pixel data does not
    rows = [_row(f"s{i}", [str(path)]) for i, path in enumerate(paths[:12])]
    rows += [_row("cut", [str(paths[12])]), _row("gone", [str(root / "missing.png")])]
    features = FEATURES.copy()
    features["images"] = datasets.List(datasets.Value("string"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows, features=features)}).save_to_disk(
        str(root / "vqa"))
    return str(root / "vqa")


@pytest.mark.parametrize("workers", [0, 2])
def test_stage_trains_past_bad_images_and_counts_them_by_reason(tmp_path, bad_data, workers):
    stage = {"name": "sft-x", "type": "sft", "datasets": [{"path": bad_data}], "num_image_tokens": 4,
             "max_length": 64, "per_device_train_batch_size": 2, "num_train_epochs": 1, "report_to": [],
             "dataloader_num_workers": workers, "logging_steps": 1}
    run_recipe(recipe_from_dict({"model": "tiny", "output_dir": str(tmp_path / "run"), "stages": [stage]}))
    summary = json.loads((tmp_path / "run" / "recipe_summary.json").read_text())["stages"]["sft-x"]
    assert summary["dropped"] == {"bad_image": 1} and summary["dropped_examples"]["bad_image"] == ["gone"]
    assert summary["skipped_in_training"] == {"by_reason": {"bad_image": 1}, "examples": {"bad_image": ["cut"]}}
    assert summary["final_loss"] is not None


_ENCODE_IN_A_FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import datasets
    from infimed.testing import tiny_processor
    from infimed.training.samples import SampleEncoder, encode_dataset

    data, counter, max_length = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class CountingEncoder(SampleEncoder):
        def __call__(self, example):
            with open(counter, "a") as f:
                f.write("x")
            return super().__call__(example)

    processor = tiny_processor(num_image_tokens=4)
    encoder = CountingEncoder(processor=processor, max_length=max_length, image_token_id=processor.image_token_id)
    kept, report = encode_dataset(datasets.load_from_disk(data), encoder)
    print(json.dumps({"fingerprint": kept._fingerprint, "kept": len(kept), "cache": kept.cache_files[0]["filename"]}))
""")


def test_encoding_is_cached_across_processes_and_keyed_by_the_settings(tmp_path):
    data = tmp_path / "vqa"
    make_vqa_dataset(6, seed=7).save_to_disk(str(data))
    counter = tmp_path / "calls"

    def encode(max_length):
        before = counter.stat().st_size if counter.exists() else 0
        out = subprocess.run([sys.executable, "-c", _ENCODE_IN_A_FRESH_PROCESS, str(data), str(counter),
                              str(max_length)], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1]), counter.stat().st_size - before

    first, calls = encode(256)
    assert calls == 6 and first["kept"] == 6
    again, calls = encode(256)  # a new process: the cache file is reused, the encoder is never called
    assert calls == 0 and again == first
    other, calls = encode(128)  # another max_length is another fingerprint: encoded again
    assert calls == 6 and other["cache"] != first["cache"]


def test_dataset_num_proc_reaches_the_encoding_and_gives_the_same_samples(processor, tmp_path, monkeypatch):
    seen = []
    build = sft_trainer.build_packed_dataset

    def recording(*args, **kwargs):
        seen.append(kwargs["num_proc"])
        return build(*args, **kwargs)

    monkeypatch.setattr(sft_trainer, "build_packed_dataset", recording)
    dataset = make_vqa_dataset(8, seed=3)
    trainer = sft_trainer.InfiMedSFTTrainer(model=_model(), args=_args(tmp_path, dataset_num_proc=2),
                                            train_dataset=dataset, processing_class=processor)
    assert seen == [2] and trainer.packing_summary["train"]["samples"] == 8
    encoder = SampleEncoder(processor=processor, max_length=256, image_token_id=processor.image_token_id)
    one, _ = encode_dataset(dataset, encoder)
    two, _ = encode_dataset(dataset, encoder, num_proc=2)  # the encoder is pickled into the worker processes
    assert one.to_dict() == two.to_dict()


_GATHER_ON_TWO_RANKS = textwrap.dedent("""
    import json, os, sys, types
    from accelerate import PartialState
    from infimed.training.sft_trainer import InfiMedSFTTrainer

    state = PartialState(cpu=True)  # gloo
    rank = state.process_index
    trainer = types.SimpleNamespace(_skip_counts={"bad_image": rank + 1}, _skip_examples={"bad_image": [f"r{rank}"]})
    InfiMedSFTTrainer._gather_skips(trainer)
    # One file per rank: both ranks share stdout, where their lines can interleave.
    with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
        json.dump(trainer.skipped_in_training, f)
""")


def test_skips_are_summed_over_ranks(tmp_path):
    script = tmp_path / "gather.py"
    script.write_text(_GATHER_ON_TWO_RANKS)
    out = subprocess.run([sys.executable, "-m", *_torchrun(), str(script), str(tmp_path)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    results = sorted(tmp_path.glob("rank*.json"))
    assert out.returncode == 0 and len(results) == 2, out.stderr[-2000:]
    for result in results:  # every rank holds the sum: 1 skip on rank 0 + 2 on rank 1
        assert json.loads(result.read_text()) == {"by_reason": {"bad_image": 3},
                                                  "examples": {"bad_image": ["r0", "r1"]}}
