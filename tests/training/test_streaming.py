"""Streamed SFT data (`streaming: true`): every kept sample packed once within budget, packing close to offline,
an exact resume of the stream (alone and through `infimed train --resume`), drops counted in the summary, and a Hub
dataset (served by the loopback stand-in Hub) streamed like its local shards."""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import yaml

from infimed.core.datasets import load_table
from infimed.testing import tiny_processor
from infimed.training.packing import PackingBudget, pack_best_fit_decreasing
from infimed.training.recipe import recipe_from_dict, run_recipe
from infimed.training.samples import SampleEncoder
from infimed.training.stage_data import EmptyDataError
from infimed.training.streaming import STREAM_STATE_FILE, StreamingPackedDataset
from tests.training.test_sft import NUM_IMAGE_TOKENS, make_vqa_dataset

MAX_LENGTH = 256


def write_shards(dataset: datasets.Dataset, folder, shards: int = 3) -> str:
    """`dataset` as `shards` parquet files `train-0000k.parquet` in `folder` (the layout `infimed curate` writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(shards):
        dataset.shard(shards, k, contiguous=True).to_parquet(str(folder / f"train-{k:05d}.parquet"))
    return str(folder)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """60 VQA samples (4 of them bad: a corrupt image, an empty answer, a missing image, one too long)."""
    return write_shards(make_vqa_dataset(60, seed=11, corrupt=True), tmp_path_factory.mktemp("stream") / "data")


def _encoder(processor=None):
    processor = processor or tiny_processor(NUM_IMAGE_TOKENS)
    return SampleEncoder(processor=processor, max_length=MAX_LENGTH, image_token_id=processor.image_token_id)


def _rows(dataset, limit=None):
    rows = []
    for row in dataset:
        rows.append([s["source_index"] for s in row["samples"]])
        if limit is not None and len(rows) == limit:
            break
    return rows


class _LengthEncoder:
    """An encoder stub over `{"length", "num_images"}` rows: the packing figures without tokenizing."""

    def __call__(self, example):
        n = example["length"]
        return {"input_ids": [1] * n, "labels": [1] * n, "num_images": example["num_images"], "length": n,
                "drop_reason": ""}


def test_every_kept_sample_once_within_budget(shards):
    encoder = _encoder()
    stream = load_table(shards, "train", streaming=True)
    rows = StreamingPackedDataset(stream, encoder, PackingBudget(MAX_LENGTH), buffer_size=16, seed=0)
    seen = [s for row in rows for s in row["samples"]]
    positions = [s["source_index"] for s in seen]
    summary = rows.summary()
    assert sorted(positions) == sorted(set(positions))  # no sample twice
    offline = make_vqa_dataset(60, seed=11, corrupt=True)
    reasons = [encoder(ex)["drop_reason"]
               for ex in offline.cast_column("images", datasets.List(datasets.Image(decode=False)))]
    assert summary["dropped"]["by_reason"] == dict(Counter(r for r in reasons if r))
    assert {"empty_assistant", "image_mismatch", "too_long"} <= set(summary["dropped"]["by_reason"])
    kept = [i for i, r in enumerate(reasons) if not r]
    assert sorted(positions) == kept  # the stream position is the row's index in the data
    assert len(seen) == summary["samples"] == summary["dropped"]["kept"] == len(kept)
    assert {s["sample_id"] for s in seen} == {offline["id"][i] for i in kept}
    for row in rows.__iter__():
        assert sum(len(s["input_ids"]) for s in row["samples"]) <= MAX_LENGTH


def test_packing_efficiency_close_to_offline():
    rng = np.random.default_rng(0)
    # Medical-VQA-like lengths at 2048 tokens per row: short answers (80-400) next to long reports (up to 1500).
    lengths = np.concatenate([rng.integers(80, 400, 2400), rng.integers(400, 1500, 600)])
    rng.shuffle(lengths)
    images = rng.integers(0, 3, len(lengths))
    stream = datasets.Dataset.from_dict({"length": lengths.tolist(), "num_images": images.tolist()})
    budget = PackingBudget(2048)
    offline = pack_best_fit_decreasing(lengths.tolist(), images.tolist(), budget, seed=0).efficiency
    streamed = StreamingPackedDataset(stream.to_iterable_dataset(num_shards=4), _LengthEncoder(), budget,
                                      buffer_size=500, seed=0)
    rows = _rows(streamed)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    efficiency = streamed.summary()["packing_efficiency"]
    assert efficiency == pytest.approx(sum(lengths) / (len(rows) * 2048))
    assert efficiency >= offline - 0.02, (efficiency, offline)
    small = StreamingPackedDataset(stream.to_iterable_dataset(num_shards=4), _LengthEncoder(), budget,
                                   buffer_size=8, seed=0)
    _rows(small)
    assert small.summary()["packing_efficiency"] < efficiency  # the buffer is what buys the fill


@pytest.mark.parametrize("cut", [1, 4, 7])
def test_state_dict_resumes_the_same_rows(shards, cut):
    stream = load_table(shards, "train", streaming=True)
    budget, encoder = PackingBudget(MAX_LENGTH), _encoder()
    uninterrupted = StreamingPackedDataset(stream, encoder, budget, buffer_size=12, seed=3)
    full = _rows(uninterrupted)
    assert len(full) > cut + 2  # the cut falls inside the pass, with rows still buffered
    first = StreamingPackedDataset(stream, encoder, budget, buffer_size=12, seed=3)
    assert _rows(first, limit=cut) == full[:cut]
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint holds
    resumed = StreamingPackedDataset(load_table(shards, "train", streaming=True), encoder, budget, buffer_size=12,
                                     seed=3)
    resumed.load_state_dict(state)
    assert _rows(resumed) == full[cut:]
    assert resumed.summary() == uninterrupted.summary()  # drops and figures carried in the state


def test_drops_are_counted_raised_when_strict_and_an_empty_stream_says_why():
    class Drops(_LengthEncoder):  # rows of length 0 stand for samples the encoder drops
        def __call__(self, example):
            return {**super().__call__(example), "drop_reason": "" if example["length"] else "empty_assistant"}

    rows = datasets.Dataset.from_dict({"id": ["a", "b", "c", "d"], "length": [5, 0, 7, 0], "num_images": [0] * 4})
    stream = rows.to_iterable_dataset()
    packed = StreamingPackedDataset(stream, Drops(), PackingBudget(16), buffer_size=2)
    assert sorted(s["sample_id"] for row in packed for s in row["samples"]) == ["a", "c"]
    assert packed.summary()["dropped"] == {"total": 4, "kept": 2, "dropped": 2, "by_reason": {"empty_assistant": 2},
                                           "examples": {"empty_assistant": ["b", "d"]}}
    with pytest.raises(ValueError, match="Sample 'b' .*empty_assistant"):
        list(StreamingPackedDataset(stream, Drops(), PackingBudget(16), strict=True))
    empty = rows.filter(lambda ex: ex["length"] == 0).to_iterable_dataset()
    with pytest.raises(EmptyDataError, match="2 read, all dropped .*empty_assistant: 2"):
        list(StreamingPackedDataset(empty, Drops(), PackingBudget(16)))


def test_weighted_streams_interleave_and_resume(tmp_path, monkeypatch):
    from infimed.training.recipe import DatasetSpec
    from infimed.training.stage_data import load_stage_stream

    # datasets waits 5 s whenever an interleaved parquet stream's reader threads stop (an arrow workaround)
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    a = write_shards(make_vqa_dataset(24, seed=1), tmp_path / "a", shards=2)
    b = write_shards(make_vqa_dataset(24, seed=2).map(lambda ex: {"id": "b" + ex["id"]}), tmp_path / "b", shards=2)
    specs = [DatasetSpec(path=a, streaming=True, weight=3.0), DatasetSpec(path=b, streaming=True, weight=1.0)]
    stream, report = load_stage_stream(specs, seed=0, stage_name="mix")
    assert [s["probability"] for s in report["sources"]] == [0.75, 0.25]
    ids = [ex["id"] for ex in stream]
    assert len(ids) == len(set(ids))  # `first_exhausted`: no source repeated
    assert 0.6 < sum(not i.startswith("b") for i in ids) / len(ids) < 0.9
    budget, encoder = PackingBudget(MAX_LENGTH), _encoder()
    full = _rows(StreamingPackedDataset(stream, encoder, budget, buffer_size=10, seed=1))
    first = StreamingPackedDataset(stream, encoder, budget, buffer_size=10, seed=1)
    _rows(first, limit=3)
    resumed = StreamingPackedDataset(load_stage_stream(specs, seed=0)[0], encoder, budget, buffer_size=10, seed=1)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert _rows(resumed) == full[3:]  # the interleaving's generator state is part of the stream state
    selected, _ = load_stage_stream([DatasetSpec(path=a, streaming=True, where={"id": ["s1", "s5"]})], seed=0)
    assert [ex["id"] for ex in selected] == ["s1", "s5"]  # `where` filters the stream as it is read


def _stage(data_dir, **overrides):
    # A constant learning rate: a step trained on other rows after the resume would change the final weights.
    stage = dict(name="sft", type="sft", datasets=[{"path": data_dir, "split": "train", "streaming": True}],
                 num_image_tokens=NUM_IMAGE_TOKENS, max_length=MAX_LENGTH, max_steps=6, learning_rate=5e-3,
                 warmup_steps=0.0, lr_scheduler_type="constant", per_device_train_batch_size=1,
                 packing_buffer_size=12, gradient_checkpointing=False, logging_steps=1, save_steps=2,
                 save_total_limit=3, report_to=[])
    return {**stage, **overrides}


def _run(stage, output_dir):
    return run_recipe(recipe_from_dict({"model": "tiny", "output_dir": str(output_dir), "seed": 3,
                                        "stages": [stage]}))["stages"]["sft"]


@pytest.fixture
def trained(monkeypatch):
    """The stream positions of every batch a training step computes its loss on, in order."""
    from infimed.training.collator import PACKING_STATS_KEY
    from infimed.training.sft_trainer import InfiMedSFTTrainer

    batches = []
    compute_loss = InfiMedSFTTrainer.compute_loss

    def record(self, model, inputs, *args, **kwargs):
        batches.append(inputs[PACKING_STATS_KEY]["source_indices"])
        return compute_loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(InfiMedSFTTrainer, "compute_loss", record)
    return batches


def test_streamed_stage_runs_and_reports(shards, tmp_path, trained):
    summary = _run(_stage(shards, max_steps=14), tmp_path / "run")
    assert summary["steps"] == 14 and summary["streaming"] is True
    assert summary["mixing"]["sources"] == [{"name": shards, "probability": 1.0}]
    assert summary["rows"] == 14 and summary["samples"] > 14  # the rows trained, several samples in each
    assert {"empty_assistant", "image_mismatch", "too_long"} <= set(summary["dropped"])
    # 14 rows outlast one pass (~12 rows of 56 samples): the corrupt image (sample s0) reached the collator
    assert summary["skipped_in_training"]["by_reason"]["bad_image"] >= 1
    assert "s0" in summary["skipped_in_training"]["examples"]["bad_image"]
    assert len(trained) == 14 and all(0 not in batch for batch in trained)  # the skipped s0 never trains
    assert (tmp_path / "run" / "sft" / "checkpoint-14" / STREAM_STATE_FILE).exists()


def test_kill_and_resume_trains_the_same_rows(shards, tmp_path, trained):
    from safetensors.torch import load_file

    reference = tmp_path / "reference"
    expected = _run(_stage(shards), reference)
    uninterrupted = list(trained)
    assert len(uninterrupted) == 6
    weights = load_file(str(reference / "sft" / "model.safetensors"))
    # A kill after step 4's checkpoint: the later checkpoint and the stage's outputs never got written.
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    shutil.rmtree(run / "sft" / "checkpoint-6")
    for name in ("sft/stage_summary.json", "sft/model.safetensors", "recipe_summary.json"):
        (run / name).unlink()
    trained.clear()
    recipe = recipe_from_dict({"model": "tiny", "output_dir": str(run), "seed": 3, "stages": [_stage(shards)]})
    summary = run_recipe(recipe, resume=True)["stages"]["sft"]
    assert summary["resumed_from"].endswith("checkpoint-4")
    assert trained == uninterrupted[4:]  # steps 5 and 6: the same rows as the uninterrupted run
    resumed = load_file(str(run / "sft" / "model.safetensors"))
    assert all(torch.equal(weights[k], resumed[k]) for k in weights)
    figures = ("rows", "samples", "packing_efficiency", "dropped")
    assert {k: summary[k] for k in figures} == {k: expected[k] for k in figures}  # counts restored with the stream

    # Cut after the last checkpoint: nothing left to train, the figures come from checkpoint-6's stream state.
    (run / "sft" / "stage_summary.json").unlink()
    trained.clear()
    summary = run_recipe(recipe, resume=True)["stages"]["sft"]
    assert summary["resumed_from"].endswith("checkpoint-6") and trained == []
    assert {k: summary[k] for k in figures} == {k: expected[k] for k in figures}


def test_recipe_validation_names_the_problem(shards):
    def load(**overrides):
        return recipe_from_dict({"model": "tiny", "stages": [_stage(shards, **overrides)]})

    with pytest.raises(ValueError, match="set `max_steps`"):
        load(max_steps=-1)
    with pytest.raises(ValueError, match=r"only be mixed by `weight`"):
        load(datasets=[{"path": shards, "streaming": True, "tokens": 1000}])
    with pytest.raises(ValueError, match="on all of them or on none"):
        load(datasets=[{"path": shards, "streaming": True}, {"path": shards}])
    with pytest.raises(ValueError, match="dataloader_num_workers: 0"):
        load(dataloader_num_workers=2)


def _worker(recipe_path: str, log_dir: str, *flags: str) -> int:
    """`infimed train` in one process of a launch, with the samples of each step it trains in LOG_DIR/rank<k>.json."""
    from infimed.cli import main
    from infimed.training.collator import PACKING_STATS_KEY
    from infimed.training.sft_trainer import InfiMedSFTTrainer

    batches, compute_loss = [], InfiMedSFTTrainer.compute_loss

    def record(self, model, inputs, *args, **kwargs):
        batches.append(inputs[PACKING_STATS_KEY]["source_indices"])
        return compute_loss(self, model, inputs, *args, **kwargs)

    InfiMedSFTTrainer.compute_loss = record
    code = main(["train", recipe_path, *flags])
    Path(log_dir, f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(batches))
    return code


def _torchrun(recipe_path: Path, log_dir: Path, *flags: str) -> list[list[list[int]]]:
    """Run the recipe under `torchrun` with 2 CPU processes (gloo); the samples each rank trained, step by step."""
    from tests.training.test_distributed_train import ROOT, _free_port

    log_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), __file__, str(recipe_path), str(log_dir), *flags]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-6000:]
    return [json.loads((log_dir / f"rank{k}.json").read_text()) for k in range(2)]


def test_two_processes_train_each_sample_once_and_resume(shards, tmp_path, trained):
    # The reference: one process, 2 rows per step. Two processes take 1 row each per step from the one stream.
    _run(_stage(shards, max_steps=4, per_device_train_batch_size=2), tmp_path / "one")
    one = [sorted(step) for step in trained]
    recipe = {"model": "tiny", "output_dir": str(tmp_path / "two"), "seed": 3,
              "stages": [_stage(shards, max_steps=4, save_steps=2, use_cpu=True)]}
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    ranks = _torchrun(recipe_path, tmp_path / "log")
    assert len(ranks[0]) == len(ranks[1]) == 4
    assert [sorted(a + b) for a, b in zip(*ranks)] == one  # each step trains the one-process step's samples
    everything = [i for rank in ranks for step in rank for i in step]
    assert len(everything) == len(set(everything))  # no sample trained twice, on any rank

    # A kill after checkpoint-2, then --resume under the launcher: both ranks train the same steps 3 and 4.
    shutil.rmtree(tmp_path / "two" / "sft" / "checkpoint-4")
    for name in ("sft/stage_summary.json", "recipe_summary.json"):
        (tmp_path / "two" / name).unlink()
    resumed = _torchrun(recipe_path, tmp_path / "resume-log", "--resume")
    assert resumed == [rank[2:] for rank in ranks]


def test_a_hub_dataset_streams_like_its_local_shards(shards, tmp_path, trained):
    """`hub_id` + `streaming: true` reads the shards from the Hub as the stage trains (HTTP range reads through
    `datasets`' Hub file system, nothing downloaded into the cache) and trains the same rows as the local shards."""
    from tests.helpers.hub_server import HubServer
    from tests.hub.test_hub import FAKE_TOKEN, client_env
    from tests.training.test_distributed_train import ROOT

    _run(_stage(shards, max_steps=4), tmp_path / "local")
    local = list(trained)
    repo = "infimed-test/streamed-vqa"
    with HubServer(token=FAKE_TOKEN) as hub:
        home = tmp_path / "hf_home"
        env = {**client_env(hub, home), "HF_DATASETS_OFFLINE": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        upload = ("from huggingface_hub import HfApi; api = HfApi(); "
                  f"api.create_repo({repo!r}, repo_type='dataset'); "
                  f"api.upload_folder(folder_path={shards!r}, path_in_repo='data', repo_id={repo!r}, "
                  "repo_type='dataset')")
        done = subprocess.run([sys.executable, "-c", upload], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
        stage = _stage(shards, max_steps=4)
        stage["datasets"] = [{"hub_id": repo, "split": "train", "streaming": True}]
        recipe_path = tmp_path / "recipe.yaml"
        recipe_path.write_text(yaml.safe_dump({"model": "tiny", "output_dir": str(tmp_path / "hub"), "seed": 3,
                                               "stages": [stage]}))
        (tmp_path / "log").mkdir()
        # HF_ENDPOINT is read when huggingface_hub is imported: the run needs a process of its own.
        done = subprocess.run([sys.executable, __file__, str(recipe_path), str(tmp_path / "log")], env=env,
                              capture_output=True, text=True, timeout=600, cwd=str(ROOT))
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-6000:]
        parquet_reads = [path for method, path, _ in hub.requests if method == "GET" and path.endswith(".parquet")]
    assert json.loads((tmp_path / "log" / "rank0.json").read_text()) == local
    read, uploaded = {Path(p).name for p in parquet_reads}, {Path(f).name for f in os.listdir(shards)}
    # Read as needed: 4 one-row steps with a 12-sample buffer need the first two of the three shards, not the last.
    assert read == uploaded - {"train-00002.parquet"}
    assert not list(home.rglob("*.parquet"))  # streamed: no shard was downloaded into the Hugging Face cache
    summary = json.loads((tmp_path / "hub" / "sft" / "stage_summary.json").read_text())
    assert summary["streaming"] is True and summary["mixing"]["sources"] == [{"name": repo, "probability": 1.0}]


if __name__ == "__main__":
    sys.exit(_worker(*sys.argv[1:]))
