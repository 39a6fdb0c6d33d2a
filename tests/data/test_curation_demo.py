"""`infimed curate` with the demo config on a small demo dataset: every deliberately corrupted sample is dropped with
the matching reason and no clean sample is dropped for quality."""

from pathlib import Path

import pytest
import yaml

from infimed.data.curation import CurationConfig, run_curation

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {
    "bad_image_bytes": "image_quality:undecodable",
    "truncated_image": "image_quality:undecodable",
    "empty_answer": "answer_validity:empty_answer",
    "image_count_mismatch": "answer_validity:placeholder_image_mismatch",
}


def test_demo_config_drops_exactly_the_corrupted(tmp_path):
    demo = pytest.importorskip("infimed.data.demo")
    import datasets

    data = tmp_path / "demo-data"
    demo.build_demo_dataset(demo.DemoDataConfig(num_samples=120, num_eval=20, corrupted_per_reason=1)).save_to_disk(
        str(data)
    )
    raw = yaml.safe_load((REPO / "recipes" / "curation" / "demo.yaml").read_text())
    raw["sources"][0]["path"] = str(data)
    raw["decontamination"]["benchmarks"][0]["path"] = str(data)
    raw["num_proc"] = 1
    report = run_curation(CurationConfig.from_dict(raw), tmp_path / "out", progress=lambda _: None)

    train = datasets.load_from_disk(str(data))["train"]
    corrupted = {i: c for i, c in zip(train["id"], train["corrupted"]) if c}
    assert len(corrupted) == len(EXPECTED)
    import json

    lines = (tmp_path / "out" / "dropped.jsonl").read_text().splitlines()
    dropped = {d["id"]: d["reason"] for d in map(json.loads, lines)}
    for sample_id, why in corrupted.items():
        assert dropped[sample_id] == EXPECTED[why]
    quality_drops = {i: r for i, r in dropped.items()
                     if i not in corrupted and not r.startswith(("duplicate", "contaminated"))}
    assert quality_drops == {}
    assert report["input"] == len(train) == report["kept"] + report["dropped"]
    assert report["dimensions_not_scored"].keys() == {"alignment", "medical_relevance"}
