"""The curation run end to end: counts conserved, reasons, dedup, decontamination, judge paths, outputs."""

import csv
import json
from pathlib import Path

import datasets
import pytest

from tests.fixtures.converters import schemas
from tests.helpers.curation import noise_png, png, row, text_row
from tests.helpers.openai_stub import OpenAIStub, last_user_text

from infimed.data.converters import training_features
from infimed.data.curation import CurationConfig, import_audit, run_curation, suggest_threshold
from infimed.processing.image_io import load_image


def _jpeg_copy(data: bytes) -> bytes:
    return png(load_image(data), "JPEG", quality=92)


EXPECTED_DROPS = {
    "dup-exact": "duplicate:exact",
    "dup-near": "duplicate:near_image",
    "contaminated-img": "contaminated:image",
    "text-dup": "duplicate:exact",
    "text-contaminated": "contaminated:question",
    "corrupt": "image_quality:undecodable",
    "zero-byte": "image_quality:undecodable",
    "empty": "answer_validity:empty_answer",
    "mismatch": "answer_validity:placeholder_image_mismatch",
}


def _rows():
    good = [row(f"good{i}", noise_png(i), question=f"Is there a lesion in zone {i}?") for i in range(6)]
    train = good + [
        row("dup-exact", noise_png(0), question="Is there a lesion in zone 0?"),
        row("dup-near", _jpeg_copy(noise_png(1)), question="Is there a lesion in zone 1?"),
        row("same-image-new-question", noise_png(2), question="Is the heart enlarged?", answer="no"),
        row("contaminated-img", noise_png(100), question="Is the lesion dark?", answer="no"),
        text_row("text-a", "Which organ stores bile?", "B", ["liver", "gallbladder"]),
        text_row("text-dup", "Which organ stores bile?", "B", ["liver", "gallbladder"]),
        text_row("text-contaminated", "Which organ filters blood to make urine?", "A", ["kidney", "spleen"]),
        row("corrupt", b"\x89PNG\r\n\x1a\nnot really"),
        row("zero-byte", b""),
        row("empty", noise_png(7), answer=""),
        row("mismatch", noise_png(8), n_placeholders=2),
    ]
    evaluation = [
        row("eval-0", noise_png(100), question="Is there a lesion?"),
        text_row("eval-1", "Which organ filters blood to make urine?", "A", ["kidney", "liver"]),
    ]
    return train, evaluation


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    train, evaluation = _rows()
    path = tmp_path_factory.mktemp("data") / "unit"
    features = training_features()
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list(train, features=features),
        "eval": datasets.Dataset.from_list(evaluation, features=features),
    }).save_to_disk(str(path))
    return str(path)


def _config(data_dir, **overrides):
    base = {
        "sources": [{"name": "unit", "path": data_dir, "split": "train", "license": "cc-by-4.0"}],
        "decontamination": {"benchmarks": [{"name": "unit-eval", "path": data_dir, "split": "eval"}]},
        "audit": {"per_stratum": 3},
        "card": {"license": "cc-by-4.0", "pretty_name": "Unit curated"},
    }
    base.update(overrides)
    return CurationConfig.from_dict(base)


def _dropped(out) -> dict:
    lines = Path(out, "dropped.jsonl").read_text().splitlines()
    return {d["id"]: d["reason"] for d in map(json.loads, lines)}


def _kept(out):
    return datasets.load_dataset("parquet", data_files=str(Path(out, "data", "*.parquet")), split="train")


@pytest.fixture(scope="module")
def baseline(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("curated")
    report = run_curation(_config(data_dir), out, progress=lambda _: None)
    return out, report


def test_counts_conserved_and_reasons(baseline):
    out, report = baseline
    dropped = _dropped(out)
    kept = _kept(out)
    assert report["input"] == 17 == report["kept"] + report["dropped"] == len(kept) + len(dropped)
    assert sum(report["dropped_by_reason"].values()) == report["dropped"]
    assert dropped == EXPECTED_DROPS
    details = {d["id"]: d["details"] for d in map(json.loads, Path(out, "dropped.jsonl").read_text().splitlines())}
    assert details["zero-byte"] and "image 0" in details["zero-byte"][0]  # the loader's reason travels with the drop
    assert set(kept["id"]) == {f"good{i}" for i in range(6)} | {"same-image-new-question", "text-a"}
    assert report["dedup"]["exact"] == 2 and report["dedup"]["near_image"] == 1
    assert report["decontamination"]["image"] == 1 and report["decontamination"]["question"] == 1
    assert report["dimensions_not_scored"] == {"alignment": "judge disabled in config",
                                               "medical_relevance": "judge disabled in config"}
    hist = report["histograms"]["per_dimension"]["image_quality"]
    assert sum(hist["all"]) == 17 - 3  # three text-only samples have no image score
    saved = json.loads(Path(out, "curation_report.json").read_text())
    assert saved["kept"] == report["kept"]


def test_output_dataset_and_card(baseline):
    from huggingface_hub import DatasetCard

    out, report = baseline
    ds = datasets.load_dataset(str(out), split="train")  # README `configs` point at the parquet shards
    assert len(ds) == report["kept"]
    assert isinstance(ds.features["images"].feature, datasets.Image)
    first = ds[0]
    assert first["images"][0].size == (64, 64) and first["score_image_quality"] == pytest.approx(1.0)
    assert first["score_alignment"] is None  # judge off: not scored, not invented
    card = DatasetCard.load(Path(out, "README.md"))
    assert card.data.license == "cc-by-4.0" and card.data.pretty_name == "Unit curated"
    assert card.data.configs[0]["data_files"][0]["path"] == "data/train-*"
    assert "not scored" in card.text and f"**{report['kept']} kept**" in card.text


def test_audit_export_and_import_round_trip(baseline, tmp_path):
    out, report = baseline
    page = Path(out, "audit", "audit.html").read_text()
    assert "data:image/png;base64," in page and "http://" not in page and "https://" not in page
    with open(Path(out, "audit", "audit.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["source"] for r in rows} == {"unit"} and len({r["band"] for r in rows}) >= 2
    assert any(r["kept"] == "0" for r in rows) and any(r["kept"] == "1" for r in rows)  # dropped ones audited too
    for r in rows:  # a clinician who agrees with the image scores, and rejects every answer
        if r["score_image_quality"]:
            r["human_image_quality"] = "1" if float(r["score_image_quality"]) >= 0.5 else "0"
        r["human_answer_validity"] = "0"
    filled = tmp_path / "verdicts.csv"
    with open(filled, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = import_audit(filled, report["thresholds"])
    image = result["dimensions"]["image_quality"]
    assert image["agreement"] == 1.0 and image["n"] == sum(1 for r in rows if r["score_image_quality"])
    answer = result["dimensions"]["answer_validity"]
    assert answer["agreement_at_suggested"] == 1.0 and answer["suggested_threshold"] > 1.0 - 1e-9
    assert result["dimensions"]["alignment"] == {"n": 0}


def test_suggest_threshold():
    assert suggest_threshold([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == (0.5, 1.0)
    t, agree = suggest_threshold([0.1, 0.5, 0.6, 0.9], [0, 1, 0, 1])
    assert agree == 0.75 and 0.1 < t <= 0.5


def test_parallel_and_chunked_match_serial(data_dir, baseline, tmp_path):
    out, report = baseline
    config = _config(data_dir, num_proc=2, chunk_size=4, shard_size=3)
    other = run_curation(config, tmp_path, progress=lambda _: None)
    assert sorted(_kept(tmp_path)["id"]) == sorted(_kept(out)["id"])
    assert other["dropped_by_reason"] == report["dropped_by_reason"]
    assert len(other["output"]["shards"]) == -(-other["kept"] // 3)


def _verdict(request):
    text = last_user_text(request)
    if "zone 3" in text:
        return "I cannot grade this."
    if "zone 4" in text:
        return 'Sure: {"alignment": 1, "medical_relevance": 5, "rationale": "text ignores the image"}'
    return '{"alignment": 4, "medical_relevance": 5, "rationale": "fine"}'


@pytest.mark.parametrize("on_failure", ["drop", "keep"])
def test_judge_through_openai_stub(data_dir, tmp_path, on_failure):
    with OpenAIStub(_verdict) as stub:
        judge = {"enabled": True, "kind": "openai", "base_url": stub.base_url, "model": "judge",
                 "on_failure": on_failure, "max_retries": 0, "cache_dir": str(tmp_path / "judge_cache")}
        config = _config(data_dir, judge=judge, decontamination={"benchmarks": []})
        report = run_curation(config, tmp_path, progress=lambda _: None)
        n_calls = len(stub.requests)
        run_curation(config, tmp_path / "again", progress=lambda _: None)
        assert len(stub.requests) == n_calls  # second run served from the content-hash cache
    assert report["input"] == report["kept"] + report["dropped"]
    assert report["unscored_by_reason"] == {"judge_unparseable": 1}
    dropped = _dropped(tmp_path)
    assert dropped["good4"] == "alignment:judge_low"
    kept = {r["id"]: r for r in _kept(tmp_path)}
    assert kept["good0"]["score_alignment"] == pytest.approx(0.75) and kept["good0"]["score_medical_relevance"] == 1.0
    if on_failure == "drop":
        assert dropped["good3"] == "unscored:judge_unparseable"
    else:
        assert kept["good3"]["score_alignment"] is None
        assert "unscored:judge_unparseable" in kept["good3"]["quality_flags"]
    assert report["judge"]["kind"] == "openai" and report["judge"]["model"] == "judge"
    assert any(part.get("type") == "image_url" for part in stub.requests[0]["messages"][1]["content"])


def test_judge_with_tiny_local_model(data_dir, baseline, tmp_path):
    from infimed.core.llm_client import LocalChatClient
    from infimed.testing import tiny_model, tiny_processor

    client = LocalChatClient((tiny_model(), tiny_processor()), max_new_tokens=4)
    judge = {"enabled": True, "kind": "local", "model": "tiny", "dimensions": ["alignment"]}
    report = run_curation(_config(data_dir, judge=judge), tmp_path, judge_client=client, progress=lambda _: None)
    # a random-weight model never writes the JSON verdict: every sample reaching the judge is unscored and dropped
    # the judge sees exactly the samples no rule, decontamination or dedup step dropped: those kept without a judge
    unscored = sum(report["unscored_by_reason"].values())
    assert unscored == report["dropped_by_category"]["unscored"] == baseline[1]["kept"]
    assert report["kept"] == 0 and report["input"] == report["dropped"]


def test_cli_and_config_errors(data_dir, tmp_path):
    import yaml

    from infimed.cli import main

    cfg = tmp_path / "curate.yaml"
    cfg.write_text(yaml.safe_dump({"sources": [{"name": "unit", "path": data_dir, "split": "train"}],
                                   "audit": {"enabled": False}}))
    assert main(["curate", str(cfg), "--output", str(tmp_path / "out")]) == 0
    assert Path(tmp_path / "out" / "README.md").exists() and not Path(tmp_path / "out" / "audit").exists()
    with pytest.raises(ValueError, match="Unknown key"):
        CurationConfig.from_dict({"sources": [{"path": data_dir}], "treshold": {}})
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        CurationConfig.from_dict({"sources": [{"path": data_dir}], "thresholds": {"image_quality": 2}})
    with pytest.raises(ValueError, match="exactly one"):
        CurationConfig.from_dict({"sources": [{"path": data_dir, "format": "slake", "source": "x"}]})
    with pytest.raises(ValueError, match="base_url"):
        CurationConfig.from_dict({"sources": [{"path": data_dir}], "judge": {"enabled": True, "model": "m"}})


def test_streamed_parquet_source_matches(data_dir, baseline, tmp_path):
    out, report = baseline
    parquet_dir = tmp_path / "parquet"
    parquet_dir.mkdir()
    datasets.load_from_disk(data_dir)["train"].to_parquet(str(parquet_dir / "train-00000-of-00001.parquet"))
    config = _config(data_dir, streaming=True, chunk_size=5,
                     sources=[{"name": "unit", "path": str(parquet_dir), "split": "train"}])
    streamed = run_curation(config, tmp_path / "out", progress=lambda _: None)
    assert streamed["dropped_by_reason"] == report["dropped_by_reason"] and streamed["kept"] == report["kept"]


def test_converter_source_in_config(tmp_path):
    import os
    import sys


    source = schemas.write_pmc_vqa(tmp_path / "pmc")
    config = CurationConfig.from_dict({"sources": [{"name": "pmc", "format": "pmc_vqa", "source": source,
                                                    "split": "test_2", "license": "cc-by-sa-4.0"}]})
    report = run_curation(config, tmp_path / "out", progress=lambda _: None)
    # fixture figures are 16 px gradients: scored low on resolution (0.25) and dropped with that reason
    assert report["input"] == 2 and report["dropped_by_reason"] == {"image_quality:low_resolution": 2}


def test_shipped_recipes_parse():
    recipes = Path(__file__).resolve().parents[2] / "recipes" / "curation"
    for path in sorted(recipes.glob("*.yaml")):
        config = CurationConfig.from_yaml(path)  # validates every key and value
        assert config.sources, path
