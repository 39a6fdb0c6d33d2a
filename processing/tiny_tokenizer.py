"""A small byte-level BPE tokenizer for the `tiny` preset, trained deterministically in code (nothing downloaded).

Byte-level BPE covers any UTF-8 text (Chinese SLAKE questions included); the merges come from a fixed built-in corpus
of medical VQA phrasing, so frequent words of the demo data and of the benchmark prompts are single tokens and a
tiny model learns them quickly. Training takes well under a second and gives identical ids on every run.
"""

from __future__ import annotations

__all__ = ["SPECIAL_TOKENS", "IMAGE_TOKEN", "build_tiny_tokenizer"]

IMAGE_TOKEN = "<image>"
# ChatML control tokens (as in Qwen tokenizers, so one chat template serves the tiny and the real presets).
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE_TOKEN]

# 1024 = 256 byte symbols + 4 specials + ~760 merges: enough for whole-word tokens of the corpus below, small enough
# that the tiny model's embedding table stays a minor share of its parameters.
TINY_VOCAB_SIZE = 1024

_CORPUS = """
user assistant system image question answer options yes no the a an of in on at to is are was were there this that
Is there a lesion in the left lung? Is there a lesion in the right lung? Is there an abnormality in this image?
Is there a nodule? Is the lesion in the upper zone? Is the lesion in the lower zone? Are there multiple lesions?
How many lesions are visible? How many nodules are visible? Which side is the lesion on? Where is the lesion located?
What is the size of the largest lesion? Which region contains the lesion? Which image shows more lesions?
left right upper lower middle zone lung lungs chest heart liver kidney brain bone spine abdomen pelvis
zero one two three four five none single multiple small medium large tiny bright dark dense faint round oval
lesion lesions nodule nodules mass masses opacity opacities abnormality abnormal normal finding findings
Frontal chest radiograph. Frontal radiograph of the chest. No focal lesion. No abnormality detected.
One small lesion in the left upper zone. Two lesions in the right lower zone. Three lesions, both lungs.
A large bright lesion in the left lower zone. Multiple nodules in both lungs. The heart size is normal.
radiograph x-ray CT MRI ultrasound scan axial coronal sagittal contrast modality plane organ
pneumonia effusion cardiomegaly atelectasis pneumothorax fracture edema consolidation tumor cyst
Options: A. B. C. D. E. A B C D E
Answer with the option's letter from the given choices directly.
Please output 'yes' or 'no'(no extra output).
Answer the question using a single word or phrase.
Please answer the question concisely.
Put your final answer in \\boxed{}. <think> </think> <answer> </answer> The answer is
patient diagnosis treatment disease symptom clinical medical medicine drug dose history examination
0 1 2 3 4 5 6 7 8 9 10 100 mm cm % . , ; : ? ! ( ) [ ] { } ' " - / + = *
"""


def build_tiny_tokenizer():
    """Train the tiny byte-level BPE and wrap it as a transformers fast tokenizer (left padding for generation)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeating the corpus changes no merge order but makes pair counts decisive over ties.
    lines = [line for line in _CORPUS.strip().splitlines() if line.strip()] * 4
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=[IMAGE_TOKEN, "<|im_start|>"],
        padding_side="left",
        model_max_length=4096,
    )
