"""The JSON-rubric judge: request building, verdict parsing, and failures counted, never silently kept."""

import base64

import pytest

from tests.helpers.curation import noise_png, row
from tests.helpers.openai_stub import OpenAIStub

from infimed.data.curation import CurationConfig, run_curation
from infimed.data.curation.judge import build_judge_request, parse_verdict
from infimed.processing.image_io import load_image

DIMS = ["alignment", "medical_relevance"]


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('{"alignment": 5, "medical_relevance": 1, "rationale": "x"}', {"alignment": 1.0, "medical_relevance": 0.0}),
        ('```json\n{"alignment": "3", "medical_relevance": 4}\n```', {"alignment": 0.5, "medical_relevance": 0.75}),
        ('Verdict: {"alignment": 2, "medical_relevance": 2} done', {"alignment": 0.25, "medical_relevance": 0.25}),
    ],
)
def test_parse_verdict_accepts_json_forms(reply, expected):
    verdict = parse_verdict(reply, DIMS)
    assert verdict.error is None and verdict.scores == pytest.approx(expected)


@pytest.mark.parametrize(
    "reply, error",
    [
        ("", "judge_empty_reply"),
        ("looks fine to me", "judge_unparseable"),
        ('{"alignment": 4}', "judge_unparseable"),  # a dimension missing
        ('{"alignment": 9, "medical_relevance": 3}', "judge_out_of_range_alignment"),
        ('{"alignment": true, "medical_relevance": 3}', "judge_out_of_range_alignment"),
    ],
)
def test_parse_verdict_rejects(reply, error):
    verdict = parse_verdict(reply, DIMS)
    assert verdict.scores is None and verdict.error == error


def test_request_carries_images_rubric_and_sample():
    sample = row("r", noise_png(0), question="Is there a lesion in the left lung?")
    image = load_image(noise_png(0, size=1024))
    messages = build_judge_request(sample, DIMS, [image], max_image_side=128)
    parts = messages[1]["content"]
    assert messages[0]["role"] == "system" and parts[0]["type"] == "image_url"
    assert load_image(base64.b64decode(parts[0]["image_url"]["url"].split(",")[1])).size == (128, 128)
    text = parts[-1]["text"]
    assert "Is there a lesion in the left lung?" in text and '"alignment": <1-5>' in text and "1 = unrelated" in text


def test_unreachable_judge_marks_samples_unscored(tmp_path):
    import datasets

    from infimed.data.converters import training_features

    data = tmp_path / "data"
    datasets.Dataset.from_list([row(f"s{i}", noise_png(i), question=f"Lesion in zone {i}?") for i in range(3)],
                               features=training_features()).save_to_disk(str(data))
    with OpenAIStub(lambda r: "unused") as stub:
        dead_url = stub.base_url  # the server is shut down when the block ends
    judge = {"enabled": True, "base_url": dead_url, "model": "judge", "max_retries": 0, "timeout": 2}
    config = CurationConfig.from_dict({"sources": [{"name": "s", "path": str(data)}], "judge": judge})
    messages = []
    report = run_curation(config, tmp_path / "out", progress=messages.append)
    assert report["kept"] == 0 and report["dropped_by_reason"] == {"unscored:judge_error": 3}
    assert report["unscored_by_reason"] == {"judge_error": 3}
    assert any("WARNING: the judge could not score 3 of 3" in m and "connection error" in m for m in messages)
