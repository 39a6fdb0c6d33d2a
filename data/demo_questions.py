"""Question types of the demo dataset: each turns a target answer into findings, a question and options.

Every question type draws its answer first (from a balanced schedule made by the caller) and then findings that
produce exactly that answer, so answers are balanced per type and always determined by the rendered image(s).
Multiple-choice options of image questions keep a fixed, natural order (counts ascending, zones left/right x
upper/lower, sizes ascending), so a balanced answer is also a uniform answer letter; the text-only questions shuffle
their options to put the answer on the scheduled letter.

Prompts are built by ``infimed.core.prompts.training_prompt`` with the instruction sentences MedEvalKit appends, so a
model trained on the demo data is evaluated with the same wording it saw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from infimed.core.prompts import PROMPT_TYPE_BY_KIND, training_prompt
from infimed.core.tasks import QuestionKind, option_letter

from .demo_render import (
    SIDES,
    SIZE_CLASSES,
    ZONES,
    Anatomy,
    Lesion,
    describe_findings,
    sample_anatomy,
    sample_lesions,
)

__all__ = [
    "PROMPT_TYPES",
    "QUESTION_TYPES",
    "QuestionType",
    "DemoQuestion",
    "build_prompt",
]

# kind -> MedEvalKit prompt type. The demo's open answers are single words ("left", "upper", "bright"), so they get
# the "single word or phrase" sentence; captions get no instruction (the question is the whole prompt).
PROMPT_TYPES = {**PROMPT_TYPE_BY_KIND, QuestionKind.OPEN: "close_ended"}
CAPTION_PROMPT = "Describe the findings in this chest radiograph."
COUNT_OPTIONS = ["0", "1", "2", "3"]
ZONE_OPTIONS = ["Left upper zone", "Left lower zone", "Right upper zone", "Right lower zone"]
SIZE_OPTIONS = ["Small", "Medium", "Large"]
COMPARE_OPTIONS = ["Image 1", "Image 2", "Both show the same number"]

# Text-only questions (no image): short medical facts, each (question, correct answer, three distractors). Written
# for this project; memorisable by design, they stand in for the medical-text share of the SFT mix.
TEXT_FACTS = [
    ("Which organ produces insulin?", "Pancreas", ("Liver", "Spleen", "Kidney")),
    ("Which imaging modality uses no ionising radiation?", "MRI", ("CT", "X-ray", "PET")),
    ("Which organ is mainly affected by pneumonia?", "Lung", ("Heart", "Liver", "Brain")),
    ("Which blood cells carry oxygen?", "Red blood cells", ("Platelets", "White blood cells", "Plasma cells")),
    ("How many chambers does the human heart have?", "Four", ("Two", "Three", "Five")),
    ("Which bone protects the brain?", "Skull", ("Femur", "Sternum", "Pelvis")),
    ("Which vessel carries blood from the heart to the body?", "Aorta", ("Vena cava", "Portal vein", "Pulmonary vein")),
    ("Which organ filters blood to make urine?", "Kidney", ("Liver", "Stomach", "Lung")),
    ("On a radiograph, which tissue appears brightest?", "Bone", ("Air", "Fat", "Muscle")),
    ("What is air in the pleural space called?", "Pneumothorax", ("Effusion", "Edema", "Atelectasis")),
    ("Which vitamin deficiency causes rickets?", "Vitamin D", ("Vitamin C", "Vitamin A", "Vitamin K")),
    ("Which organ stores bile?", "Gallbladder", ("Pancreas", "Spleen", "Bladder")),
]


def build_prompt(kind: str, question: str, options: list[str] | None = None) -> str:
    """The user text: question, then ``Options:`` lines for multiple choice, then the kind's instruction."""
    return training_prompt(question, PROMPT_TYPES.get(kind), options or [])


@dataclass
class DemoQuestion:
    """One generated item: the findings of each image (``[]`` per image without lesions; no images: text-only)."""

    kind: str
    question: str
    answer: str
    options: list[str] = field(default_factory=list)
    images: list[tuple[Anatomy, list[Lesion]]] = field(default_factory=list)


@dataclass(frozen=True)
class QuestionType:
    """``make(rng, target)`` returns a :class:`DemoQuestion` whose gold answer corresponds to ``target``, one of
    ``targets``; ``weight`` is the type's share of the dataset."""

    name: str
    kind: str
    weight: float
    targets: tuple[str, ...]
    make: Callable[[np.random.Generator, str], DemoQuestion]


def _image(rng, **constraints) -> tuple[Anatomy, list[Lesion]]:
    anatomy = sample_anatomy(rng)
    return anatomy, sample_lesions(rng, anatomy, **constraints)


def _other(side: str) -> str:
    return SIDES[1 - SIDES.index(side)]


# ------------------------------------------------------------------------------------------------------ yes/no


def _any_lesion(rng, target: str) -> DemoQuestion:
    count = int(rng.integers(1, 4)) if target == "yes" else 0
    question = ("Is there a lesion in this image?", "Is there an abnormality in this image?")[int(rng.integers(2))]
    return DemoQuestion(QuestionKind.YES_NO, question, target, images=[_image(rng, count=count)])


def _side_lesion(rng, target: str) -> DemoQuestion:
    side = str(rng.choice(SIDES))
    if target == "yes":
        count = int(rng.integers(1, 4))
        sides = [side] + [None] * (count - 1)
    else:
        # Most "no" images have lesions in the other lung, so the answer needs the side, not just "any lesion".
        count = int(rng.choice([0, 1, 1, 2, 2]))
        sides = [_other(side)] * count
    return DemoQuestion(
        QuestionKind.YES_NO, f"Is there a lesion in the {side} lung?", target,
        images=[_image(rng, count=count, sides=sides)],
    )


def _multiple(rng, target: str) -> DemoQuestion:
    count = int(rng.integers(2, 4)) if target == "yes" else int(rng.choice([0, 1, 1]))
    return DemoQuestion(QuestionKind.YES_NO, "Are there multiple lesions?", target, images=[_image(rng, count=count)])


# ----------------------------------------------------------------------------------------------- multiple choice


def _count_mc(rng, target: str) -> DemoQuestion:
    count = COUNT_OPTIONS.index(target)
    return DemoQuestion(
        QuestionKind.MULTIPLE_CHOICE, "How many lesions are visible?", option_letter(count), list(COUNT_OPTIONS),
        [_image(rng, count=count)],
    )


def _zone_mc(rng, target: str) -> DemoQuestion:
    side, zone = target.split()
    answer = option_letter(ZONE_OPTIONS.index(f"{side.capitalize()} {zone} zone"))
    image = _image(rng, count=1, sides=[side], zones=[zone])
    return DemoQuestion(
        QuestionKind.MULTIPLE_CHOICE, "Where is the lesion located?", answer, list(ZONE_OPTIONS), [image]
    )


def _size_mc(rng, target: str) -> DemoQuestion:
    return DemoQuestion(
        QuestionKind.MULTIPLE_CHOICE, "What is the size of the lesion?", option_letter(SIZE_CLASSES.index(target)),
        list(SIZE_OPTIONS), [_image(rng, count=1, sizes=[target])],
    )


def _compare_mc(rng, target: str) -> DemoQuestion:
    if target == "same":
        first = second = int(rng.integers(0, 4))
    else:
        low, high = sorted(int(c) for c in rng.choice(4, size=2, replace=False))
        first, second = (high, low) if target == "first" else (low, high)
    answer = option_letter(("first", "second", "same").index(target))
    question = "Image 1 and Image 2 are chest radiographs. Which image shows more lesions?"
    return DemoQuestion(
        QuestionKind.MULTIPLE_CHOICE, question, answer, list(COMPARE_OPTIONS),
        [_image(rng, count=first), _image(rng, count=second)],
    )


def _text_fact(rng, target: str) -> DemoQuestion:
    question, correct, distractors = TEXT_FACTS[int(rng.integers(len(TEXT_FACTS)))]
    others = [distractors[i] for i in rng.permutation(len(distractors))]
    position = ord(target) - ord("A")
    options = others[:position] + [correct] + others[position:]
    return DemoQuestion(QuestionKind.MULTIPLE_CHOICE, question, target, options, [])


# ----------------------------------------------------------------------------------------------------- open


def _side_open(rng, target: str) -> DemoQuestion:
    count = int(rng.choice([1, 1, 2]))  # a third have two lesions, both on the answer side
    image = _image(rng, count=count, sides=[target] * count)
    return DemoQuestion(QuestionKind.OPEN, "Which side is the lesion on?", target, images=[image])


def _zone_open(rng, target: str) -> DemoQuestion:
    image = _image(rng, count=1, zones=[target])
    return DemoQuestion(QuestionKind.OPEN, "Which zone contains the lesion?", target, images=[image])


def _appearance_open(rng, target: str) -> DemoQuestion:
    return DemoQuestion(
        QuestionKind.OPEN, "Is the lesion bright or dark?", target, images=[_image(rng, count=1, appearances=[target])]
    )


# ----------------------------------------------------------------------------------------------------- caption


def _caption(rng, target: str) -> DemoQuestion:
    anatomy, lesions = _image(rng, count=int(target))
    return DemoQuestion(QuestionKind.CAPTION, CAPTION_PROMPT, describe_findings(lesions), images=[(anatomy, lesions)])


# Shares: about 36% yes/no, 30% multiple choice (4% text-only, 4% two-image), 14% open, 20% captions. Captions feed
# continual pretraining; the question kinds feed SFT and GRPO and are what the evaluation scores.
QUESTION_TYPES: tuple[QuestionType, ...] = (
    QuestionType("any_lesion", QuestionKind.YES_NO, 0.12, ("yes", "no"), _any_lesion),
    QuestionType("side_lesion", QuestionKind.YES_NO, 0.14, ("yes", "no"), _side_lesion),
    QuestionType("multiple_lesions", QuestionKind.YES_NO, 0.10, ("yes", "no"), _multiple),
    QuestionType("count", QuestionKind.MULTIPLE_CHOICE, 0.08, tuple(COUNT_OPTIONS), _count_mc),
    QuestionType("zone", QuestionKind.MULTIPLE_CHOICE, 0.07, tuple(f"{s} {z}" for s in SIDES for z in ZONES), _zone_mc),
    QuestionType("size", QuestionKind.MULTIPLE_CHOICE, 0.07, SIZE_CLASSES, _size_mc),
    QuestionType("compare_two_images", QuestionKind.MULTIPLE_CHOICE, 0.04, ("first", "second", "same"), _compare_mc),
    QuestionType("text_fact", QuestionKind.MULTIPLE_CHOICE, 0.04, ("A", "B", "C", "D"), _text_fact),
    QuestionType("side_open", QuestionKind.OPEN, 0.05, SIDES, _side_open),
    QuestionType("zone_open", QuestionKind.OPEN, 0.05, ZONES, _zone_open),
    QuestionType("appearance_open", QuestionKind.OPEN, 0.04, ("bright", "dark"), _appearance_open),
    QuestionType("caption", QuestionKind.CAPTION, 0.20, ("0", "1", "2", "3"), _caption),
)
