"""`infimed.data.demo`: deterministic, balanced, image-determined demo VQA data; flagged corruptions; the CLI."""

import io
import json
import re
from pathlib import Path
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from infimed.data.demo import (
    CORRUPTION_REASONS,
    DemoDataConfig,
    build_demo_dataset,
    demo_features,
    generate_demo_samples,
)
from infimed.data import demo_render as render
from infimed.core.tasks import RECORD_KINDS as KINDS
from infimed.data.demo_questions import TEXT_FACTS
from infimed.data.demo_render import render_radiograph, sample_anatomy, sample_lesions
from infimed.processing.image_io import ImageLoadError, load_image
from infimed.training.recipe import load_recipe

DEMO_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"

WORDS = {1: "One", 2: "Two", 3: "Three"}


@pytest.fixture(scope="module")
def train():
    return generate_demo_samples(DemoDataConfig(num_samples=400, num_eval=40, seed=3), "train")


@pytest.fixture(scope="module")
def clean(train):
    return [s for s in train if not s.row["corrupted"]]


def placeholders(row) -> int:
    return sum(block["type"] == "image" for m in row["messages"] for block in m["content"])


def grey(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64) / 255.0


def chosen(row) -> str:
    return row["options"][ord(row["answer"]) - ord("A")]


def expected_answer(row, findings) -> str:
    """The gold answer recomputed from the renderer's findings, independently of the generator's code."""
    q, lesions = row["question"], (findings[0]["lesions"] if findings else None)
    if q in ("Is there a lesion in this image?", "Is there an abnormality in this image?"):
        return "yes" if lesions else "no"
    if m := re.fullmatch(r"Is there a lesion in the (left|right) lung\?", q):
        return "yes" if any(les["side"] == m.group(1) for les in lesions) else "no"
    if q == "Are there multiple lesions?":
        return "yes" if len(lesions) > 1 else "no"
    if q == "How many lesions are visible?":
        return row["answer"] if chosen(row) == str(len(lesions)) else "<wrong>"
    if q == "Where is the lesion located?":
        (les,) = lesions
        return row["answer"] if chosen(row) == f"{les['side'].capitalize()} {les['zone']} zone" else "<wrong>"
    if q == "What is the size of the lesion?":
        (les,) = lesions
        return row["answer"] if chosen(row).lower() == les["size"] else "<wrong>"
    if q.endswith("Which image shows more lesions?"):
        first, second = (len(f["lesions"]) for f in findings)
        truth = "Image 1" if first > second else "Image 2" if second > first else "Both"
        return row["answer"] if chosen(row).startswith(truth) else "<wrong>"
    if q == "Which side is the lesion on?":
        (side,) = {les["side"] for les in lesions}
        return side
    if q == "Which zone contains the lesion?":
        (les,) = lesions
        return les["zone"]
    if q == "Is the lesion bright or dark?":
        (les,) = lesions
        return les["appearance"]
    if row["kind"] == "caption":
        return row["answer"]  # checked separately in test_captions_describe_the_findings
    facts = {question: answer for question, answer, _ in TEXT_FACTS}
    if not findings and q in facts:
        return row["answer"] if chosen(row) == facts[q] else "<wrong>"
    raise AssertionError(f"no independent rule for question {q!r}: add one to this test")


def test_same_seed_same_bytes_other_seed_other_data():
    config = DemoDataConfig(num_samples=60, num_eval=10, seed=11)
    first = [s.row for s in generate_demo_samples(config, "train")]
    again = [s.row for s in generate_demo_samples(config, "train")]
    assert first == again  # image bytes included
    other = [s.row for s in generate_demo_samples(DemoDataConfig(num_samples=60, num_eval=10, seed=12), "train")]
    assert [r["images"] for r in other] != [r["images"] for r in first]


def test_schema_and_sample_structure():
    import datasets

    dataset = build_demo_dataset(DemoDataConfig(num_samples=300, num_eval=60, seed=0))
    assert set(dataset) == {"train", "eval"} and len(dataset["train"]) == 300 and len(dataset["eval"]) == 60
    for split in dataset.values():
        assert split.features == demo_features()
        assert split.column_names == ["id", "images", "messages", "kind", "question", "answer", "options",
                                      "source", "corrupted"]
    rows = dataset["eval"]  # clean, so every image decodes
    assert set(rows["kind"]) == set(KINDS) and set(rows["source"]) == {"demo"}
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert assistant["content"] == [{"type": "text", "text": row["answer"]}] and row["answer"]
        assert placeholders(row) == len(row["images"])
        assert user["content"][-1]["type"] == "text" and user["content"][-1]["text"].startswith(row["question"])
        assert all(load_image(img).size == (64, 64) for img in row["images"])
        if row["kind"] == "multiple_choice":
            assert 3 <= len(row["options"]) <= 4 and "A" <= row["answer"] < chr(ord("A") + len(row["options"]))
            assert all(f"{chr(65 + i)}. {opt}" in user["content"][-1]["text"] for i, opt in enumerate(row["options"]))
        else:
            assert row["options"] == []
        if row["kind"] == "yes_no":
            assert row["answer"] in ("yes", "no")
    # Train holds undecodable images on purpose: read it without decoding, as a robust consumer would.
    raw = dataset["train"].cast_column("images", datasets.List(datasets.Image(decode=False)))
    image_counts = Counter(len(images) for images in raw["images"])
    assert image_counts[0] > 0 and image_counts[2] > 0  # text-only and two-image samples exist
    assert image_counts[1] > 0.8 * len(dataset["train"])


def test_answers_are_balanced_per_question_type(train, clean):
    by_type: dict[str, Counter] = {}
    for s in train:  # corruption keeps the gold answer field except for empty_answer rows
        if s.row["corrupted"] != "empty_answer" and s.row["kind"] != "caption":
            by_type.setdefault(s.question_type, Counter())[s.row["answer"]] += 1
    for name, counts in by_type.items():
        # Balanced by construction: +-1 from the schedule, +-1 more for the empty-answer corruptions removed.
        assert max(counts.values()) - min(counts.values()) <= 2, (name, counts)
        assert len(counts) >= 2, (name, counts)
    yes_no = Counter(s.row["answer"] for s in clean if s.row["kind"] == "yes_no")
    assert abs(yes_no["yes"] - yes_no["no"]) <= 4, yes_no


def test_answers_follow_the_rendered_findings(clean):
    for s in clean:
        assert s.row["answer"] == expected_answer(s.row, s.findings), (s.row["id"], s.row["question"], s.findings)


def test_captions_describe_the_findings(clean):
    captions = [s for s in clean if s.row["kind"] == "caption"]
    assert {len(s.findings[0]["lesions"]) for s in captions} == {0, 1, 2, 3}
    for s in captions:
        text, lesions = s.row["answer"], s.findings[0]["lesions"]
        assert text.startswith("Frontal chest radiograph.")
        if not lesions:
            assert "No focal lesion" in text
            continue
        assert WORDS[len(lesions)] in text
        for les in lesions:
            assert f"{les['size']} {les['appearance']} lesion in the {les['side']} {les['zone']} zone" in text


def test_lesions_are_visible_where_the_findings_say(clean):
    """Bright lesions are brighter and dark ones darker than their lung; lesion-free lungs have no blob."""
    checked = 0
    for s in clean[:150]:
        for png, finding in zip((img["bytes"] for img in s.row["images"]), s.findings):
            image, anatomy, lesions = grey(png), finding["anatomy"], finding["lesions"]
            yy, xx = np.mgrid[0:64, 0:64] + 0.5
            heart_x, heart_y = (xx - render._HEART_X) / (render._HEART_A + 2), (yy - render._HEART_Y) / (render._HEART_B + 2)
            heart = heart_x**2 + heart_y**2  # > 1 outside the heart shadow (plus a 2 px rim)
            for side, sign in (("left", 1), ("right", -1)):
                cx, cy = 32 + sign * anatomy["lung_dx"], anatomy["lung_cy"]
                lung = (((xx - cx) / anatomy["lung_a"]) ** 2 + ((yy - cy) / anatomy["lung_b"]) ** 2 < 0.8) & (heart > 1)
                for les in lesions:
                    lung &= np.hypot(xx - les["x"], yy - les["y"]) > les["radius"] + 2
                level = image[lung].mean()
                for les in (les for les in lesions if les["side"] == side):
                    r, c = int(les["y"]), int(les["x"])
                    centre = image[r - 1 : r + 2, c - 1 : c + 2].mean()
                    if les["appearance"] == "bright":
                        assert centre > level + 0.2, (s.row["id"], les, centre, level)
                    else:
                        assert centre < level - 0.12, (s.row["id"], les, centre, level)
                    checked += 1
                if not any(les["side"] == side for les in lesions):
                    assert np.percentile(image[lung], 99.5) < level + 0.2, (s.row["id"], side)
    assert checked > 50


def test_renderer_adds_each_lesion_only_at_its_place():
    rng = np.random.default_rng(0)
    anatomy = sample_anatomy(rng)
    lesions = sample_lesions(rng, anatomy, count=2, appearances=["bright", "dark"])
    with_lesions = render_radiograph(np.random.default_rng(5), lesions, anatomy)
    without = render_radiograph(np.random.default_rng(5), [], anatomy)  # same noise draw
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    near = np.zeros((64, 64), bool)
    for les, sign in zip(lesions, (1, -1)):
        d = np.hypot(xx - les.x, yy - les.y)
        assert sign * (with_lesions - without)[d < 0.5 * les.radius].mean() > 0.8 * les.contrast
        near |= d < les.radius + 4
    assert np.abs(with_lesions - without)[~near].max() < 1e-3


def test_corrupted_samples_are_flagged_and_really_broken(train):
    config = DemoDataConfig()
    corrupted = Counter(s.row["corrupted"] for s in train if s.row["corrupted"])
    assert corrupted == {reason: config.corrupted_per_reason for reason in CORRUPTION_REASONS}
    for s in train:
        row, reason = s.row, s.row["corrupted"]
        if reason in ("bad_image_bytes", "truncated_image"):
            with pytest.raises(ImageLoadError, match=row["id"]):
                load_image(row["images"][0], name=row["id"])
        elif reason == "empty_answer":
            assert row["answer"] == "" and row["messages"][-1]["content"][0]["text"] == ""
        elif reason == "image_count_mismatch":
            assert placeholders(row) == len(row["images"]) + 1
        else:
            assert reason == "" and placeholders(row) == len(row["images"]) and row["answer"]


def test_eval_is_clean_and_disjoint_from_train(train):
    eval_samples = generate_demo_samples(DemoDataConfig(num_samples=400, num_eval=40, seed=3), "eval")
    assert len(eval_samples) == 40 and not any(s.row["corrupted"] for s in eval_samples)
    train_images = {img["bytes"] for s in train for img in s.row["images"]}
    assert not train_images & {img["bytes"] for s in eval_samples for img in s.row["images"]}
    assert not {s.row["id"] for s in train} & {s.row["id"] for s in eval_samples}


def test_cli_writes_a_loadable_dataset_and_a_dicom_example(tmp_path, capsys):
    import datasets
    import pydicom

    from infimed.cli import main

    out = tmp_path / "demo"
    assert main(["demo-data", "--output", str(out), "--num-samples", "80", "--num-eval", "20", "--seed", "4"]) == 0
    assert "train 80, eval 20" in capsys.readouterr().out
    loaded = datasets.load_from_disk(str(out))
    assert {k: len(v) for k, v in loaded.items()} == {"train": 80, "eval": 20}
    reasons = Counter(c for c in loaded["train"]["corrupted"] if c)
    assert set(reasons) == set(CORRUPTION_REASONS) and sum(reasons.values()) <= 0.1 * 80  # capped at 10%
    assert not any(loaded["eval"]["corrupted"])
    info = json.loads((out / "info.json").read_text())
    assert info["splits"] == {"train": 80, "eval": 20} and set(info["answers"]["eval"]) <= set(KINDS)

    example = json.loads((out / "examples" / "examples.json").read_text())
    ds = pydicom.dcmread(example["path"])
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 16
    assert "RescaleIntercept" in ds and "WindowCenter" in ds and "WindowWidth" in ds
    from_dicom = np.asarray(load_image(example["path"]), dtype=int)
    from_png = np.asarray(load_image(example["png_path"]), dtype=int)
    assert from_dicom.shape == (64, 64, 3) and np.abs(from_dicom - from_png).max() <= 1
    (les,) = example["findings"]
    asked = re.fullmatch(r"Is there a lesion in the (left|right) lung\?", example["question"]).group(1)
    assert example["answer"] == ("yes" if les["side"] == asked else "no")


def test_cli_help_and_bad_sizes():
    from infimed.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["demo-data", "--help"])
    assert exit_info.value.code == 0
    with pytest.raises(ValueError, match="num_samples"):
        DemoDataConfig(num_samples=0)


def _trained_kinds(stage) -> set[str]:
    kinds = set()
    for source in stage.datasets:
        wanted = (source.where or {}).get("kind", list(KINDS))
        kinds |= {wanted} if isinstance(wanted, str) else set(wanted)
    return kinds


def test_demo_recipe_keeps_every_question_kind_once_taught():
    """A question kind that an SFT stage of the demo teaches stays in every later SFT stage's mix: a closed-only stage
    after SFT-1 erased open answers (held-out open accuracy 14% after SFT-1, 0% after SFT-3)."""
    stages = [stage for stage in load_recipe(str(DEMO_RECIPE)).stages if stage.type == "sft"]
    taught: set[str] = set()
    for stage in stages[1:]:  # the first stage is continual pretraining on captions
        kinds = _trained_kinds(stage) - {"caption"}
        assert taught <= kinds, f"stage {stage.name!r} drops {sorted(taught - kinds)}, taught by an earlier stage"
        taught |= kinds
    assert {"yes_no", "multiple_choice", "open"} <= _trained_kinds(stages[-1])
