"""Readers for public medical VQA / caption / MCQ schemas, and conversion to the training conversation format.

Each ``read_<name>(source, split=None, **opts) -> list[MedRecord]`` takes a Hub id (read through ``datasets`` /
``huggingface_hub``) or a local path in the published layout. ``READERS`` maps short names to readers, so configs can
say ``format: slake``.

    from infimed.data.converters import READERS, records_to_dataset
    records = READERS["vqa_rad"]("flaviagiammarino/vqa-rad", split="train")
    train = records_to_dataset(records, source="vqa_rad")
"""

from .captions import read_caption_pairs
from .conversations import read_llava_conversations
from .hf_vqa import read_pathvqa, read_vqa_rad
from .medxpertqa import read_medxpertqa_mm
from .mmmu import HEALTH_MEDICINE_SUBJECTS, read_mmmu
from .omnimedvqa import read_omnimedvqa
from .pmc_vqa import read_pmc_vqa
from .records import MedRecord, infer_closed_kind
from .slake import read_slake
from .text_mcq import read_medmcqa, read_medqa, read_pubmedqa
from .training import format_prompt, records_to_dataset, to_training_example, training_features

READERS = {
    "vqa_rad": read_vqa_rad,
    "pathvqa": read_pathvqa,
    "slake": read_slake,
    "pmc_vqa": read_pmc_vqa,
    "omnimedvqa": read_omnimedvqa,
    "medxpertqa_mm": read_medxpertqa_mm,
    "mmmu": read_mmmu,
    "medqa": read_medqa,
    "medmcqa": read_medmcqa,
    "pubmedqa": read_pubmedqa,
    "llava_conversations": read_llava_conversations,
    "captions": read_caption_pairs,
}

__all__ = [
    "MedRecord", "READERS", "HEALTH_MEDICINE_SUBJECTS", "infer_closed_kind",
    "format_prompt", "records_to_dataset", "to_training_example", "training_features",
    "read_vqa_rad", "read_pathvqa", "read_slake", "read_pmc_vqa", "read_omnimedvqa", "read_medxpertqa_mm",
    "read_mmmu", "read_medqa", "read_medmcqa", "read_pubmedqa", "read_llava_conversations", "read_caption_pairs",
]
