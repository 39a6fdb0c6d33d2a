"""`--medevalkit-compat` reproduces MedEvalKit's verdicts: one test per known cause, MedEvalKit's verdict written out
as the expected value (worked by hand from its source: utils/utils.py, the benchmarks' cal_metrics, MMMU eval_utils)."""

import random

from infimed.evaluation.compat import (
    NOT_REPRODUCED, compat_aggregate, compat_judge_correct, compat_judge_request, compat_parse, compat_score_item,
)
from infimed.evaluation.items import EvalItem
from infimed.evaluation.judge import MEDEVALKIT_JUDGE_PROMPT, medevalkit_judge_messages


def item(benchmark, answer, kind, prompt_type, options=(), source=None, answer_type=None, question="Q?"):
    category = {"answer_type": answer_type} if answer_type else {}
    return EvalItem(id="x", benchmark=benchmark, question=question, answer=answer, kind=kind, prompt_type=prompt_type,
                    options=list(options), source=dict(source or {}), category=category)


def verdict(it, prediction, seed=0):
    return compat_score_item(it, prediction, random.Random(seed))["compat"]


def test_slake_capitalised_gold_takes_exact_match_not_substring():
    slake = item("slake", "no", "yes_no", "close_ended", source={"answer": "No"}, answer_type="closed")
    # MedEvalKit: "No" not in ["yes", "no"] -> judge_close_end_vqa: "no, it is not" != "no" -> wrong
    assert verdict(slake, "No, it is not.")["correct"] is False
    assert verdict(slake, "No")["correct"] is True  # exact after lowercasing
    # VQA-RAD lowercases its gold first, so the substring rule applies: "no, it is not" contains "no" only -> right
    rad = item("vqa_rad", "no", "yes_no", "judgement", source={"answer": "No"})
    assert verdict(rad, "No, it is not.")["correct"] is True


def test_unclosed_boxed_replaces_answer_with_none():
    assert compat_parse("\\boxed{B") == "None"
    assert compat_parse("The boxed region shows the liver") == "None"
    pmc = item("medqa", "B", "multiple_choice", "multiple_choice", options=["liver", "spleen"])
    # parse_response -> "None" -> "none" is no letter or choice -> nearest choice to "none" by difflib: "A. liver"
    # ratio("a. liver","none")=2/12, ratio("b. spleen","none")=2/13 -> A, gold B -> wrong
    assert verdict(pmc, "\\boxed{B")["correct"] is False
    rad = item("vqa_rad", "liver", "open", "open_ended", source={"answer": "liver"})
    assert verdict(rad, "the boxed region: liver")["correct"] is False  # "None" != "liver"


def test_mmmu_open_always_wrong():
    mmmu = item("mmmu_hm", "aorta", "closed", "close_ended", source={"answer": "aorta"}, answer_type="open")
    assert verdict(mmmu, "aorta")["correct"] is False  # iterated character by character
    number = item("mmmu_hm", "12", "closed", "close_ended", source={"answer": "12"}, answer_type="open")
    assert verdict(number, "12")["correct"] is False  # a numeric gold is a float, never compared with a character


def test_pmc_vqa_raw_cells_in_fallback():
    cells = ["A:MRI ", "B:CT ", "C:PET ", "D:Ultrasound "]
    pmc = item("pmc_vqa", "B", "multiple_choice", "multiple_choice", options=["MRI", "CT", "PET", "Ultrasound"],
               source={"options": cells, "answer": "B"})
    # "b:ct" -> head after ":" is "ct": not a letter, not a raw cell ("b:ct " != "ct") -> nearest cell to "b:ct" is
    # "b:ct " -> B -> right
    assert verdict(pmc, "B:CT")["correct"] is True
    assert verdict(pmc, "B:CT")["fallback"] == "nearest_option"
    # a rendered "B. CT" line: head "b" -> letter B -> right, read directly
    assert verdict(pmc, "B. CT")["fallback"] is None


def test_vqa_rad_strips_slake_does_not():
    rad = item("vqa_rad", "liver", "open", "open_ended", source={"answer": "liver"})
    assert verdict(rad, "  Liver \n")["correct"] is True  # stripped, then exact match
    slake = item("slake", "Liver", "open", "open_ended", source={"answer": "Liver"}, answer_type="open")
    assert verdict(slake, " Liver")["correct"] is False  # " liver" != "liver"
    path = item("path_vqa", "necrosis", "open", "open_ended", source={"answer": "necrosis"})
    assert verdict(path, "necrosis ")["correct"] is True


def test_mmmu_choice_parser_order():
    opts = ["Effusion", "Pneumothorax", "Consolidation"]
    mmmu = item("mmmu_hm", "B", "multiple_choice", "multiple_choice", options=opts, source={"answer": "B"})
    # a bracketed candidate beats a later bare letter: (B) found, " C " never looked at
    assert verdict(mmmu, "(B) is more likely than C here")["extracted"] == "B"
    # several bracketed candidates: the last occurrence wins
    assert verdict(mmmu, "Not (A), the answer is (B)")["extracted"] == "B"
    # no letter: option text counts only for answers over 5 words; the last one mentioned wins
    assert verdict(mmmu, "I first thought effusion but it is pneumothorax")["extracted"] == "B"
    # "B," is not " B " (only the outer punctuation is stripped) and 4 words are too few for option text -> random
    assert verdict(mmmu, "I pick B, clearly")["fallback"] == "random_option"


def test_omnimedvqa_text_gold_kept():
    omni = item("omnimedvqa", "B", "multiple_choice", "multiple_choice", options=["MRI", "CT"],
                source={"answer": "ct", "options": ["MRI", "CT"]})
    # gold "ct" equals no option exactly, so it stays text: the letter "B" is compared with "b. ct" -> wrong
    assert verdict(omni, "B")["correct"] is False
    assert verdict(omni, "ct")["correct"] is True  # the text itself equals the gold
    exact = item("omnimedvqa", "B", "multiple_choice", "multiple_choice", options=["MRI", "CT"],
                 source={"answer": "CT", "options": ["MRI", "CT"]})
    assert verdict(exact, "B")["correct"] is True


def test_judge_prompt_and_polarity():
    slake = item("slake", "Lung", "open", "open_ended", source={"answer": "Lung", "question": "Which organ?"},
                 answer_type="open")
    question, response, answer = compat_judge_request(slake, "<answer>The Lung</answer>")
    assert (question, response, answer) == ("Which organ?", "The Lung", "Lung")
    text = medevalkit_judge_messages(question, response, answer)[0]["content"]
    assert text == MEDEVALKIT_JUDGE_PROMPT.format(question="Which organ?", answer="Lung", response="The Lung")
    assert "(0 represents correct, 1 represents incorrect)" in text and text.startswith("\nYour task")
    assert "<think>{your concise think step}</think>" in text
    assert compat_judge_correct("<think>same</think><judge>0</judge>") is True
    assert compat_judge_correct("<judge>1</judge>") is False and compat_judge_correct(None) is False
    assert compat_judge_correct("0") is True  # no tag: the whole reply is the verdict
    # VQA-RAD: closed items are not judged
    assert compat_judge_request(item("vqa_rad", "yes", "yes_no", "judgement", source={"answer": "Yes"}), "y") is None


def test_judge_verdicts_feed_the_aggregate():
    items = [item("slake", "Lung", "open", "open_ended", source={"answer": "Lung"}, answer_type="open"),
             item("slake", "no", "yes_no", "close_ended", source={"answer": "no"}, answer_type="closed")]
    records = [{"benchmark": "slake", "category": i.category, **compat_score_item(i, p, random.Random(0))}
               for i, p in zip(items, ["lungs", "no"])]
    for rec, reply in zip(records, ["<judge>0</judge>", "<judge>0</judge>"]):
        rec["compat"]["judge"] = {"correct": compat_judge_correct(reply)}
    out = compat_aggregate(records)
    assert out["open"]["right"] == 1 and out["close"]["right"] == 2  # the closed item counted twice
    assert out["total"]["right"] == 3


def test_empty_open_answer_crash_listed_not_reproduced():
    rad = item("vqa_rad", "liver", "open", "open_ended", source={"answer": "liver"})
    records = [{"benchmark": "vqa_rad", "category": rad.category, **compat_score_item(rad, "", random.Random(0))}]
    out = compat_aggregate(records)
    assert out["not_reproduced"]["empty_open_answer_crash"]["items"] == 1
    assert set(out["not_reproduced"]) == set(NOT_REPRODUCED)
