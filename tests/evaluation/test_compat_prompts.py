"""MedEvalKit's prompts word for word (prompt set "medevalkit"), one test per benchmark, on fixtures in the real
layouts; the expected strings are written out from MedEvalKit's templates."""

from tests.fixtures.converters import schemas

from infimed.evaluation.benchmarks import load_benchmark
from infimed.evaluation.prompts import build_prompt, prompt_images

MC = "Answer with the option's letter from the given choices directly."
WRITERS = {"vqa_rad": schemas.write_vqa_rad, "path_vqa": schemas.write_pathvqa, "slake": schemas.write_slake,
           "pmc_vqa": schemas.write_pmc_vqa, "omnimedvqa": schemas.write_omnimedvqa,
           "medxpertqa_mm": schemas.write_medxpertqa_mm, "mmmu_hm": schemas.write_mmmu, "medqa": schemas.write_medqa,
           "medmcqa": schemas.write_medmcqa, "pubmedqa": schemas.write_pubmedqa_openlifescience}


def prompts(tmp_path, name, reasoning=False):
    WRITERS[name](tmp_path / name)
    items = load_benchmark(name, data_dir=tmp_path).items
    return [build_prompt(item, reasoning, "medevalkit") for item in items], items


def test_vqa_rad(tmp_path):
    texts, _ = prompts(tmp_path, "vqa_rad")
    assert texts == ["is there a fracture?\nPlease output 'yes' or 'no'(no extra output).",
                     "what organ is shown?\nPlease answer the question concisely.",
                     "Is the lung clear?\nPlease output 'yes' or 'no'(no extra output)."]  # "Yes" lowercased first


def test_path_vqa(tmp_path):
    texts, _ = prompts(tmp_path, "path_vqa")
    assert texts == ["what is present?\nPlease answer the question concisely.",
                     "is this a granuloma?\nPlease output 'yes' or 'no'(no extra output)."]


def test_slake(tmp_path):
    texts, _ = prompts(tmp_path, "slake")
    assert texts == ["Is the lung healthy?\nAnswer the question using a single word or phrase.",
                     "Which organ is abnormal?\nPlease answer the question concisely.",
                     "肺部健康吗？\n请用一个单词或者短语回答该问题。"]


def test_pmc_vqa_raw_cells(tmp_path):
    texts, _ = prompts(tmp_path, "pmc_vqa")
    assert texts[0] == ("\nQuestion: What imaging modality was used?\nOptions: \nA:MRI \nB:CT \nC:PET \nD:Ultrasound "
                        f"\n{MC}")


def test_omnimedvqa(tmp_path):
    texts, _ = prompts(tmp_path, "omnimedvqa")
    assert texts[0] == f"\nQuestion: What modality is this?\nOptions: \nA. MRI\nB. CT\n{MC}"


def test_medxpertqa_keeps_answer_choices_tail(tmp_path):
    texts, items = prompts(tmp_path, "medxpertqa_mm")
    question = ("A 40-year-old presents with a rash. What is the diagnosis? Answer Choices: (A) Psoriasis (B) Eczema "
                "(C) Tinea (D) Lupus (E) Lichen planus")
    options = "A. Psoriasis\nB. Eczema\nC. Tinea\nD. Lupus\nE. Lichen planus"
    assert texts[0] == f"\nQuestion: {question}\nOptions: \n{options}\n{MC}"
    assert len(prompt_images(items[0], "medevalkit")) == 2  # every image


def test_mmmu_layout_and_first_image_only(tmp_path):
    texts, items = prompts(tmp_path, "mmmu_hm")
    assert texts[0] == ("\n<image 1> Which finding is shown?\n(A) Effusion\n(B) Pneumothorax\n(C) Consolidation\n"
                        f"\n        {MC}")
    assert texts[1] == "\n<image 1> Name the structure.\n        Answer the question using a single word or phrase."
    items[0].images.append(items[0].images[0])
    assert len(prompt_images(items[0], "medevalkit")) == 1 and len(prompt_images(items[0], "infimed")) == 2


def test_mmmu_reasoning_sentence(tmp_path):
    texts, _ = prompts(tmp_path, "mmmu_hm", reasoning=True)
    assert texts[0].endswith('\n        Answer with the option\'s letter from the given choices and put the letter in '
                             'one "\\boxed{}".')


def test_medqa(tmp_path):
    texts, _ = prompts(tmp_path, "medqa")
    assert texts[0] == ("\nQuestion: A 23-year-old with polyuria. Most likely diagnosis?\nOptions: \nA. Diabetes "
                        f"mellitus\nB. Diabetes insipidus\nC. SIADH\nD. Hypercalcemia\n{MC}")


def test_medmcqa(tmp_path):
    texts, _ = prompts(tmp_path, "medmcqa")
    assert texts[0] == f"\nQuestion: Vitamin deficient in scurvy?\nOptions: \nA. A\nB. B12\nC. C\nD. D\n{MC}"


def test_pubmedqa_context_first_and_no_space_after_letter(tmp_path):
    texts, _ = prompts(tmp_path, "pubmedqa")
    assert texts[0] == ("Context: Background text.\nResults text.\n\nQuestion: Does aspirin reduce stroke risk?\n"
                        f"Options: \nA.yes\nB.no\nC.maybe\n{MC}")
