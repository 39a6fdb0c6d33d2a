"""Benchmark loaders on tiny local copies of every public schema, and MedEvalKit's prompts."""

import os
import sys

import pytest

from tests.fixtures.converters import schemas  # writers of each real public layout

from infimed.core.prompts import INSTRUCTIONS  # noqa: E402
from infimed.evaluation.benchmarks import BENCHMARKS, load_benchmark, resolve_benchmark_names  # noqa: E402
from infimed.evaluation.prompts import build_prompt, template_identity  # noqa: E402
from infimed.processing.image_io import load_image  # noqa: E402

pytestmark = pytest.mark.upstream  # `make test-latest` runs these against the newest releases

WRITERS = {
    "vqa_rad": schemas.write_vqa_rad,
    "slake": schemas.write_slake,
    "path_vqa": schemas.write_pathvqa,
    "pmc_vqa": schemas.write_pmc_vqa,
    "omnimedvqa": schemas.write_omnimedvqa,
    "medxpertqa_mm": schemas.write_medxpertqa_mm,
    "mmmu_hm": schemas.write_mmmu,
    "medqa": schemas.write_medqa,
    "medmcqa": schemas.write_medmcqa,
    "pubmedqa": schemas.write_pubmedqa,
}

MC_SENTENCE = INSTRUCTIONS[("en", "multiple_choice")][0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    for name, write in WRITERS.items():
        write(root / name)
    return root


def test_every_benchmark_has_a_loader_and_fixture():
    assert set(BENCHMARKS) - {"slake_en", "slake_zh", "demo"} == set(WRITERS)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_loader_reads_schema(data_dir, name):
    loaded = load_benchmark(name, data_dir=data_dir)
    assert loaded.items, name
    assert loaded.source == str(data_dir / name)  # the local copy, never the Hub
    for item in loaded.items:
        assert item.benchmark == name and item.answer
        assert item.category["answer_type"] in ("closed", "open")
        if item.kind == "multiple_choice":
            assert item.answer in "ABCDE"[: len(item.options)]
        for image in item.images:
            assert load_image(image).size[0] > 0
        build_prompt(item)  # every item renders


def test_vqa_rad_closed_open_and_prompts(data_dir):
    items = load_benchmark("vqa_rad", data_dir=data_dir).items
    assert [(i.kind, i.prompt_type) for i in items] == [
        ("yes_no", "judgement"), ("open", "open_ended"), ("yes_no", "judgement")]
    assert build_prompt(items[0]) == "is there a fracture?\nPlease output 'yes' or 'no'(no extra output)."
    assert build_prompt(items[1]).endswith("\nPlease answer the question concisely.")
    assert build_prompt(items[0], reasoning=True).endswith('put the answer in one "\\boxed{}".')


def test_slake_languages_separately_and_together(data_dir):
    both = load_benchmark("slake", data_dir=data_dir).items
    assert [i.category["lang"] for i in both] == ["en", "en", "zh"]
    # Closed items: MedEvalKit's "single word or phrase" prompt, but yes/no scoring for yes/no (and 是/否) golds.
    assert [(i.kind, i.prompt_type) for i in both] == [
        ("yes_no", "close_ended"), ("open", "open_ended"), ("yes_no", "close_ended")]
    assert build_prompt(both[2]) == "肺部健康吗？\n请用一个单词或者短语回答该问题。"
    assert [i.lang for i in load_benchmark("slake_zh", data_dir=data_dir).items] == ["zh"]
    assert [i.lang for i in load_benchmark("slake_en", data_dir=data_dir).items] == ["en", "en"]


def test_multiple_choice_prompt_layout(data_dir):
    [item] = load_benchmark("medqa", data_dir=data_dir).items
    assert build_prompt(item) == (
        "\nQuestion: A 23-year-old with polyuria. Most likely diagnosis?\nOptions: \n"
        "A. Diabetes mellitus\nB. Diabetes insipidus\nC. SIADH\nD. Hypercalcemia\n" + MC_SENTENCE
    )
    assert item.answer == "B"


def test_mmmu_options_and_open_questions(data_dir):
    items = load_benchmark("mmmu_hm", data_dir=data_dir).items
    mc, open_item = items
    assert mc.kind == "multiple_choice" and mc.option_format == "paren"
    assert "(A) Effusion\n(B) Pneumothorax\n(C) Consolidation\n" in build_prompt(mc)
    assert build_prompt(mc).endswith(MC_SENTENCE)
    assert open_item.kind == "closed" and build_prompt(open_item).endswith("single word or phrase.")
    assert mc.category["subject"] == "Clinical_Medicine"


def test_unscorable_items_are_skipped_and_counted(data_dir):
    loaded = load_benchmark("medmcqa", data_dir=data_dir)
    assert len(loaded.items) == 1 and loaded.skipped == {"no gold answer": 1}  # MedMCQA's hidden-answer row


def test_pubmedqa_is_three_way_with_context(data_dir):
    [item] = load_benchmark("pubmedqa", data_dir=data_dir).items
    assert item.options == ["yes", "no", "maybe"] and item.answer == "C"
    assert "Background text." in build_prompt(item)


def test_limit_is_a_prefix(data_dir):
    full = load_benchmark("vqa_rad", data_dir=data_dir).items
    assert [i.id for i in load_benchmark("vqa_rad", data_dir=data_dir, limit=2).items] == [i.id for i in full[:2]]


def test_names_and_errors():
    assert resolve_benchmark_names("pathvqa, MMMU,vqa-rad") == ["path_vqa", "mmmu_hm", "vqa_rad"]
    assert len(resolve_benchmark_names("infimed")) == 7
    with pytest.raises(ValueError, match="Unknown benchmark 'nope'"):
        resolve_benchmark_names("nope")
    with pytest.raises(ValueError, match="demo-data"):
        load_benchmark("demo", data_dir=None)


def test_template_identity_changes_with_mode():
    a, b = template_identity(False, None), template_identity(True, "You are a radiologist.")
    assert a["name"] == "infimed" and a["sha256"] == b["sha256"]
    compat = template_identity(False, None, "medevalkit")
    assert compat["name"] == "medevalkit" and compat["sha256"] != a["sha256"]
    assert (a["reasoning"], b["reasoning"], b["system_prompt"]) == (False, True, "You are a radiologist.")


def test_pubmedqa_benchmark_reads_openlifescience_layout(tmp_path):
    schemas.write_pubmedqa_openlifescience(tmp_path / "pubmedqa")
    [item] = load_benchmark("pubmedqa", data_dir=tmp_path).items
    assert item.options == ["yes", "no", "maybe"] and item.answer == "C"
    assert item.source["answer"] == "C" and item.source["context"] == "Background text.\nResults text."


def test_omnimedvqa_benchmark_reads_the_released_zip(tmp_path):
    schemas.write_omnimedvqa_zip(tmp_path)  # data_dir/OmniMedVQA.zip
    loaded = load_benchmark("omnimedvqa", data_dir=tmp_path)
    assert [i.answer for i in loaded.items] == ["B", "C"] and loaded.source == str(tmp_path / "OmniMedVQA.zip")
