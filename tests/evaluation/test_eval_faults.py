"""`infimed eval` on broken input: every fault is one error naming the file (and line), never a silent score."""

import json
import os
import sys

import pytest

from tests.fixtures.converters import schemas  # writers of each real public layout

from infimed.cli import main as cli_main  # noqa: E402
from infimed.core.errors import InputFileError  # noqa: E402
from infimed.evaluation.benchmarks import load_benchmark  # noqa: E402
from infimed.evaluation.runner import EvalConfig, read_predictions, run_evaluation  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    schemas.write_vqa_rad(root / "vqa_rad")
    return root


@pytest.fixture(scope="module")
def ids(data_dir):
    return [item.id for item in load_benchmark("vqa_rad", data_dir=data_dir).items]


def _write(path, lines):
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    return path


def _row(item_id, prediction="yes", **extra):
    return json.dumps({"id": item_id, "prediction": prediction, **extra})


def _run(data_dir, tmp_path, predictions, **kw):
    config = EvalConfig(benchmarks=["vqa_rad"], data_dir=str(data_dir), predictions=str(predictions),
                        output_dir=str(tmp_path / "out"), progress=False, **kw)
    return run_evaluation(config)


def test_unknown_id_names_file_and_line(data_dir, ids, tmp_path):
    preds = _write(tmp_path / "preds.jsonl", [_row(ids[0]), _row("not-an-item")])
    with pytest.raises(InputFileError, match=r"preds\.jsonl:2: id 'not-an-item' matches no item of vqa_rad"):
        _run(data_dir, tmp_path, preds)
    preds = _write(tmp_path / "other.jsonl", [_row(ids[0], benchmark="vqa_rad"), _row("x9", benchmark="vqa_rad")])
    with pytest.raises(InputFileError, match=r"other\.jsonl:2: id 'x9' matches no item of vqa_rad"):
        _run(data_dir, tmp_path, preds)


def test_lines_for_other_benchmarks_and_ids_past_limit_are_valid(data_dir, ids, tmp_path):
    preds = _write(tmp_path / "preds.jsonl", [_row(i) for i in ids] + [_row("p1", benchmark="path_vqa")])
    results = _run(data_dir, tmp_path, preds, limit=2)
    assert results["benchmarks"]["vqa_rad"]["num_items"] == 2


def test_duplicate_id_names_both_lines(ids, tmp_path):
    preds = _write(tmp_path / "preds.jsonl", [_row(ids[0]), _row(ids[1]), _row(ids[0], "no")])
    with pytest.raises(InputFileError, match=rf"preds\.jsonl:3: duplicate id '{ids[0]}' \(first on line 1\)"):
        read_predictions(preds)


def test_non_utf8_and_non_json_lines_name_the_line(ids, tmp_path):
    preds = _write(tmp_path / "latin1.jsonl", [_row(ids[0]), '{"id": "a", "prediction": "né"}'.encode("latin-1")])
    with pytest.raises(InputFileError, match=r"latin1\.jsonl:2: not UTF-8 text"):
        read_predictions(preds)
    preds = _write(tmp_path / "torn.jsonl", [_row(ids[0]), "", '{"id": "b", "predic'])
    with pytest.raises(InputFileError, match=r"torn\.jsonl:3: expected a JSON object with `id` and `prediction`"):
        read_predictions(preds)
    preds = _write(tmp_path / "list.jsonl", ["[1, 2]"])
    with pytest.raises(InputFileError, match=r"list\.jsonl:1: expected a JSON object"):
        read_predictions(preds)


def test_cli_prints_one_line_for_a_bad_predictions_file(data_dir, ids, tmp_path, capsys):
    preds = _write(tmp_path / "preds.jsonl", [_row(ids[0]), _row(ids[0])])
    status = cli_main(["eval", "--predictions", str(preds), "--benchmarks", "vqa_rad", "--data-dir", str(data_dir),
                       "--output", str(tmp_path / "out"), "--no-progress"], report_errors=True)
    err = capsys.readouterr().err.splitlines()
    assert status == 2 and err == [f"error: {preds}:2: duplicate id '{ids[0]}' (first on line 1); keep one "
                                   "prediction per item."]


def test_missing_data_dir_is_an_error_not_a_hub_download(tmp_path):
    typo = tmp_path / "medbnech"
    with pytest.raises(InputFileError, match=rf"`--data-dir` '{typo}' is not an existing folder"):
        load_benchmark("vqa_rad", data_dir=typo)


def test_empty_benchmark_file_names_benchmark_and_folder(tmp_path):
    schemas.write_medqa(tmp_path / "medqa")
    (tmp_path / "medqa" / "test.jsonl").write_text("")
    with pytest.raises(InputFileError, match=rf"Benchmark 'medqa': empty data file\(s\) .*test\.jsonl.* in "
                                             rf"{tmp_path / 'medqa'}"):
        load_benchmark("medqa", data_dir=tmp_path)


def test_benchmark_with_no_items_names_benchmark_and_folder(tmp_path):
    schemas.write_slake(tmp_path / "slake")
    (tmp_path / "slake" / "test.json").write_text("[]")
    with pytest.raises(InputFileError, match=rf"Benchmark 'slake' has no scorable items in {tmp_path / 'slake'}"):
        load_benchmark("slake", data_dir=tmp_path)


def test_cache_key_follows_image_content(tmp_path, monkeypatch):
    """Same ids, same questions, one re-exported image: only the items showing that image miss the cache."""
    from PIL import Image

    from infimed.evaluation import runner

    schemas.write_slake(tmp_path / "data" / "slake")
    keys = []

    def fake_generate(model, processor, requests, options, cache=None, **kwargs):
        keys.append([r.key for r in requests])
        return ["yes"] * len(requests), {}

    class FakeModel:
        def parameters(self):
            return iter(())

    monkeypatch.setattr(runner, "batched_generate", fake_generate)
    config = EvalConfig(benchmarks=["slake"], data_dir=str(tmp_path / "data"), model="m",
                        output_dir=str(tmp_path / "out"), progress=False)
    run_evaluation(config, model=FakeModel(), processor=None)
    run_evaluation(config, model=FakeModel(), processor=None)
    Image.new("RGB", (8, 8), "white").save(tmp_path / "data" / "slake" / "imgs" / "xmlab1" / "source.jpg")
    run_evaluation(config, model=FakeModel(), processor=None)
    first, again, reexported = keys
    assert again == first  # unchanged data: every item answered from the cache
    assert [a != b for a, b in zip(first, reexported)] == [True, True, False]  # items 1-2 show xmlab1, item 3 not


def test_cache_torn_last_line_is_counted_and_does_not_swallow_the_next_entry(tmp_path, caplog):
    from infimed.evaluation.generation import PredictionCache

    path = tmp_path / "cache.jsonl"
    PredictionCache(path).put_many([("a", "yes")])
    with open(path, "ab") as f:
        f.write('{"key": "b", "prediction": "n\u00e9'.encode()[:-1])  # killed mid-write, inside a UTF-8 character
    with caplog.at_level("WARNING"):
        resumed = PredictionCache(path)
    assert resumed.torn_lines == 1 and "skipped 1 torn line" in caplog.text
    resumed.put_many([("b", "no"), ("c", "yes")])
    reloaded = PredictionCache(path)
    assert reloaded.entries == {"a": "yes", "b": "no", "c": "yes"} and reloaded.torn_lines == 1
