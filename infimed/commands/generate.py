"""`infimed generate`: answer a prompt about one or more images (PNG, JPEG, DICOM, ...) with a checkpoint.

    infimed generate --model runs/tiny --image scan.dcm --prompt "Is there a lesion in the left lung?"
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infimed.core.config import ConfigParser, config_from_args
from infimed.core.generation import generate_batch, load_for_generation
from infimed.processing.image_io import load_image

__all__ = ["GenerateArguments", "add_arguments", "main", "answer"]


@dataclass
class GenerateArguments:
    model: str = field(metadata={"help": "Checkpoint folder or Hub id."})
    prompt: str = field(metadata={"help": "The question or instruction."})
    image: list[str] = field(default_factory=list, metadata={"help": "Image file (repeat for several images)."})
    # 32 tokens: a yes/no, an option letter or a short finding; raise it for reports or reasoning
    max_new_tokens: int = field(default=32, metadata={"help": "Tokens generated for the answer."})
    num_image_tokens: int | None = field(default=None, metadata={"help": "Override visual tokens per image."})
    dicom_frame: int = field(default=0, metadata={"help": "Frame of multi-frame DICOM files."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)."})


def add_arguments(parser: ConfigParser) -> None:
    parser.add_config_arguments(GenerateArguments)


def answer(model, processor, images: list, prompt: str, *, max_new_tokens: int = 32, num_image_tokens=None) -> str:
    """Greedy answer of ``model`` to ``prompt`` about ``images`` (paths, PIL, arrays; DICOM files included)."""
    frame = getattr(processor.image_processor, "dicom_frame", 0)
    pil_images = [load_image(image, frame=frame) for image in images]
    content = [{"type": "image"} for _ in pil_images] + [{"type": "text", "text": prompt}]
    [text] = generate_batch(model, processor, [[{"role": "user", "content": content}]], [pil_images],
                            max_new_tokens=max_new_tokens, num_image_tokens=num_image_tokens)
    return text


def main(namespace) -> int:
    args = config_from_args(GenerateArguments, namespace)
    model, processor = load_for_generation(args.model, args.device)
    processor.image_processor.dicom_frame = args.dicom_frame
    print(answer(model, processor, args.image, args.prompt, max_new_tokens=args.max_new_tokens,
                 num_image_tokens=args.num_image_tokens))
    return 0
