"""Every raw reader on a tiny local copy of its real public schema, and the training-format conversion."""

import os
import sys

import pytest

from tests.fixtures.converters import schemas  # writers of each real public layout

from infimed.core.prompts import INSTRUCTIONS  # noqa: E402
from infimed.core.tasks import letter_for, strip_option_prefix  # noqa: E402
from infimed.data import converters as C  # noqa: E402
from infimed.processing.image_io import load_image  # noqa: E402


def _decodes(records):
    return all(load_image(img).size[0] > 0 for r in records for img in r.images)


def test_vqa_rad_and_pathvqa(tmp_path):
    recs = C.read_vqa_rad(schemas.write_vqa_rad(tmp_path / "rad"), split="test")
    assert [r.kind for r in recs] == ["yes_no", "open", "yes_no"]
    assert [r.answer for r in recs] == ["no", "liver", "yes"]  # "Yes" normalised
    assert [r.answer_type for r in recs] == ["CLOSED", "OPEN", "CLOSED"]
    assert len(C.read_vqa_rad(str(tmp_path / "rad"), split="train")) == 1  # split picks the file
    assert _decodes(recs)
    path = C.read_pathvqa(schemas.write_pathvqa(tmp_path / "path"))
    assert [r.kind for r in path] == ["open", "yes_no"] and path[0].id != recs[0].id


def test_slake_languages(tmp_path):
    src = schemas.write_slake(tmp_path / "slake")
    recs = C.read_slake(src, split="test")
    assert [r.lang for r in recs] == ["en", "en", "zh"]
    assert [r.kind for r in recs] == ["yes_no", "open", "open"]  # zh closed answer stays text, type CLOSED
    assert recs[2].answer == "否" and recs[2].answer_type == "CLOSED"
    assert recs[0].answer == "no" and recs[0].meta["modality"] == "X-Ray"
    assert [r.lang for r in C.read_slake(src, lang="zh")] == ["zh"]
    assert _decodes(recs)
    with pytest.raises(ValueError, match="train.json"):
        C.read_slake(src, split="train")


def test_pmc_vqa_test_2_header(tmp_path):
    recs = C.read_pmc_vqa(schemas.write_pmc_vqa(tmp_path / "pmc"))
    assert recs[0].options == ["MRI", "CT", "PET", "Ultrasound"]  # "A:" prefixes stripped
    assert recs[0].meta["source"]["options"] == ["A:MRI ", "B:CT ", "C:PET ", "D:Ultrasound "]  # raw cells kept
    assert [r.answer for r in recs] == ["B", "A"] and recs[0].meta["caption"] == "Axial image of the chest."
    assert all(r.kind == "multiple_choice" for r in recs) and _decodes(recs)


def test_pmc_vqa_train_header_letters_from_label_or_text(tmp_path):
    recs = C.read_pmc_vqa(schemas.write_pmc_vqa_train(tmp_path / "pmc"), split="train")
    assert [r.answer for r in recs] == ["B", "A"]  # second row has no Answer_label: matched by text
    assert _decodes(recs)


def test_omnimedvqa_from_zip_folder_and_zip_parent(tmp_path):
    archive = schemas.write_omnimedvqa_zip(tmp_path / "hub")
    from_zip = C.read_omnimedvqa(archive)  # OmniMedVQA.zip itself (top-level OmniMedVQA/ inside)
    from_parent = C.read_omnimedvqa(str(tmp_path / "hub"))  # the folder holding it, as a Hub snapshot is
    from_folder = C.read_omnimedvqa(schemas.write_omnimedvqa(tmp_path / "plain"))
    assert [r.answer for r in from_zip] == [r.answer for r in from_parent] == [r.answer for r in from_folder]
    assert len(from_zip) == 2 and _decodes(from_zip)
    assert from_zip[0].meta["source"]["answer"] == "CT"  # the text gold, as released


def test_omnimedvqa_missing_release_is_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="QA_information/Open-access"):
        C.read_omnimedvqa(str(tmp_path / "empty"))


def test_omnimedvqa_variable_options(tmp_path):
    recs = C.read_omnimedvqa(schemas.write_omnimedvqa(tmp_path / "omni"))
    assert [len(r.options) for r in recs] == [2, 4]
    assert [r.answer for r in recs] == ["B", "C"]
    assert recs[1].meta["modality_type"] == "CT"  # the file that spells it `modality`
    assert _decodes(recs)


def test_medxpertqa_mm(tmp_path):
    [rec] = C.read_medxpertqa_mm(schemas.write_medxpertqa_mm(tmp_path / "mx"))
    assert rec.answer == "C" and len(rec.options) == 5 and len(rec.images) == 2
    assert "Answer Choices" not in rec.question and rec.question.endswith("diagnosis?")
    assert _decodes([rec])


def test_mmmu_options_and_open(tmp_path):
    recs = C.read_mmmu(schemas.write_mmmu(tmp_path / "mmmu"))
    assert [r.kind for r in recs] == ["multiple_choice", "open"]
    assert recs[0].options == ["Effusion", "Pneumothorax", "Consolidation"] and recs[0].answer == "B"
    assert [len(r.images) for r in recs] == [1, 1] and recs[0].meta["subject"] == "Clinical_Medicine"
    assert _decodes(recs)


def test_text_mcqs(tmp_path):
    [medqa] = C.read_medqa(schemas.write_medqa(tmp_path / "medqa"))
    assert medqa.answer == "B" and medqa.images == [] and len(medqa.options) == 4
    mcq = C.read_medmcqa(schemas.write_medmcqa(tmp_path / "medmcqa"))
    assert [r.answer for r in mcq] == ["C", ""]  # cop=-1 (hidden test answer) stays empty for curation to drop
    [pub] = C.read_pubmedqa(schemas.write_pubmedqa(tmp_path / "pubmedqa"))
    assert pub.options == ["yes", "no", "maybe"] and pub.answer == "C"
    assert "Background text." in pub.question and pub.question.endswith("stroke risk?")


def test_pubmedqa_openlifescience_layout(tmp_path):
    [pub] = C.read_pubmedqa(schemas.write_pubmedqa_openlifescience(tmp_path / "pubmedqa"), split="test")
    assert pub.options == ["yes", "no", "maybe"] and pub.answer == "C" and pub.id == "pubmedqa-12345"
    assert pub.meta["source"]["context"] == "Background text.\nResults text."
    assert pub.question.endswith("Question: Does aspirin reduce stroke risk?")


def test_conversations_and_captions(tmp_path):
    [conv] = C.read_llava_conversations(schemas.write_llava_conversations(tmp_path / "pmv"))
    assert conv.question == "What does this CT show?" and "<image>" not in conv.question
    assert len(conv.meta["turns"]) == 4 and _decodes([conv])
    caps = C.read_caption_pairs(schemas.write_captions(tmp_path / "roco"))
    assert [r.kind for r in caps] == ["caption", "caption"] and caps[0].id == "ROCO_00001"
    assert _decodes(caps)


def test_training_format(tmp_path):
    recs = C.read_pmc_vqa(schemas.write_pmc_vqa(tmp_path / "pmc"))
    recs += C.read_vqa_rad(schemas.write_vqa_rad(tmp_path / "rad"))
    recs += C.read_llava_conversations(schemas.write_llava_conversations(tmp_path / "pmv"))
    recs += C.read_medqa(schemas.write_medqa(tmp_path / "medqa"))
    ds = C.records_to_dataset(recs, source="mixed")
    assert ds.column_names == ["id", "images", "messages", "kind", "question", "answer", "options", "source"]
    for row in ds:
        user, last = row["messages"][0], row["messages"][-1]
        n_placeholders = sum(part["type"] == "image" for m in row["messages"] for part in m["content"])
        assert user["role"] == "user" and last["role"] == "assistant"
        assert n_placeholders == len(row["images"])  # one placeholder per image, always
    mc = ds[0]
    assert "Options:\nA. MRI\nB. CT" in mc["messages"][0]["content"][-1]["text"]
    assert mc["messages"][-1]["content"][0]["text"] == "B"
    conv = next(r for r in ds if r["id"] == "pmv-1")
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant"]
    assert load_image(ds[0]["images"][0]).mode == "RGB"  # Image feature decodes


def test_bad_schema_raises(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"img": [1], "q": ["x"]}).to_parquet(str(tmp_path / "test.parquet"))
    with pytest.raises(ValueError, match="lacks columns"):
        C.read_vqa_rad(str(tmp_path / "test.parquet"))
    with pytest.raises(ValueError, match="kind"):
        C.MedRecord(id="x", images=[], question="q", options=[], answer="a", kind="essay")


def test_letter_for_forms():
    options = ["T. gondii", "CT", "MRI"]
    assert letter_for("b", options) == "B"
    assert letter_for("ct.", options) == "B"
    assert letter_for("T. gondii", options) == "A"  # an option text that looks lettered
    assert letter_for("(C) MRI", options) == "C" and letter_for("C:", options) == "C"
    assert letter_for("B: MRI", options) is None  # letter and text disagree: not guessed
    assert letter_for("D", options) is None and letter_for(3, options) is None
    assert strip_option_prefix("A:CT ", "A") == "CT" and strip_option_prefix("T. gondii", "A") == "T. gondii"


def test_prompts_use_the_evaluation_instructions():
    zh_closed = C.MedRecord(id="z", images=[], question="肺部健康吗？", options=[], answer="否", kind="open",
                            answer_type="CLOSED", lang="zh")
    assert C.format_prompt(zh_closed).endswith(INSTRUCTIONS[("zh", "close_ended")][0])
    yes_no = C.MedRecord(id="y", images=[], question="Is it normal?", options=[], answer="yes", kind="yes_no")
    assert C.format_prompt(yes_no) == "Is it normal?\n" + INSTRUCTIONS[("en", "judgement")][0]
