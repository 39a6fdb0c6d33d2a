"""The curation output is replaced whole and only by a finished run; shards and report must agree before a push."""

import json
from pathlib import Path

import datasets
import pytest
import yaml

from tests.helpers.curation import noise_png, row

from infimed.cli import main
from infimed.core.errors import InputFileError
from infimed.data.converters import training_features
from infimed.data.curation import CurationConfig, run_curation
from infimed.data.curation import pipeline
from infimed.hub import check_dataset_folder, push_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    rows = [row(f"good{i}", noise_png(i), question=f"Is there a lesion in zone {i}?") for i in range(7)]
    path = tmp_path_factory.mktemp("data") / "unit"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows, features=training_features())}).save_to_disk(
        str(path))
    return str(path)


def _config(data_dir, shard_size=2):
    return CurationConfig.from_dict({
        "sources": [{"name": "unit", "path": data_dir, "split": "train", "license": "cc-by-4.0"}],
        "shard_size": shard_size,
        "card": {"license": "cc-by-4.0", "pretty_name": "Unit curated"},
    })


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _quiet(_):
    return None


@pytest.fixture
def curated(data_dir, tmp_path):
    out = tmp_path / "curated"
    report = run_curation(_config(data_dir), out, progress=_quiet)
    assert report["kept"] == 7 and len(report["output"]["shards"]) == 4  # 7 rows in shards of 2
    return out


def test_a_rerun_killed_midway_keeps_the_previous_output(data_dir, curated, monkeypatch):
    before = _snapshot(curated)
    flush = pipeline._ShardWriter.flush
    calls = []

    def killed_after_two_shards(self, force=False):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt  # a kill in the middle of writing shards
        flush(self, force)

    monkeypatch.setattr(pipeline._ShardWriter, "flush", killed_after_two_shards)
    with pytest.raises(KeyboardInterrupt):
        run_curation(_config(data_dir), curated, progress=_quiet, overwrite=True)
    assert len(calls) == 3
    assert _snapshot(curated) == before
    assert sorted(p.name for p in curated.parent.iterdir()) == ["curated"]  # no partial folder left behind
    assert check_dataset_folder(curated) == []


def test_a_non_empty_output_needs_overwrite_and_is_then_replaced_whole(data_dir, curated, tmp_path):
    with pytest.raises(InputFileError, match=rf"{curated} already holds a curation output; pass --overwrite"):
        run_curation(_config(data_dir), curated, progress=_quiet)
    report = run_curation(_config(data_dir, shard_size=10), curated, progress=_quiet, overwrite=True)
    shards = sorted(str(p.relative_to(curated)) for p in (curated / "data").glob("*.parquet"))
    assert shards == report["output"]["shards"] == ["data/train-00000-of-00001.parquet"]  # the 4 old shards are gone
    assert check_dataset_folder(curated) == []

    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(InputFileError, match="is not an earlier curation output"):
        run_curation(_config(data_dir), other, progress=_quiet, overwrite=True)
    assert (other / "todo.txt").read_text() == "mine"


def test_shards_that_disagree_with_the_report_are_refused(curated):
    report_path = curated / "curation_report.json"
    report = json.loads(report_path.read_text())
    report["kept"] += 100  # a stale report from a bigger run
    report_path.write_text(json.dumps(report))
    problems = check_dataset_folder(curated)
    assert len(problems) == 1 and "hold 7 rows but curation_report.json says 107 were kept" in problems[0]
    with pytest.raises(ValueError, match="says 107 were kept"):
        push_dataset(curated, "org/name", token="hf_unused")  # refused before any Hub call

    report["kept"] -= 100
    report_path.write_text(json.dumps(report))
    (curated / report["output"]["shards"][-1]).unlink()  # a shard lost
    problems = check_dataset_folder(curated)
    assert len(problems) == 1 and "lists shards" in problems[0]


def test_cli_overwrite_flag(data_dir, curated, tmp_path):
    cfg = tmp_path / "curate.yaml"
    cfg.write_text(yaml.safe_dump({"sources": [{"name": "unit", "path": data_dir, "split": "train"}]}))
    with pytest.raises(InputFileError, match="--overwrite"):
        main(["curate", str(cfg), "--output", str(curated)])
    assert main(["curate", str(cfg), "--output", str(curated), "--overwrite"]) == 0
    assert check_dataset_folder(curated) == []
