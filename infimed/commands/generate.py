"""`infimed generate`: answer a prompt about one or more images (PNG, JPEG, DICOM, ...) with a checkpoint.

    infimed generate --model runs/tiny --image scan.dcm --prompt "Is there a lesion in the left lung?"
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "main", "answer"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Checkpoint folder or Hub id.")
    parser.add_argument("--image", action="append", default=[], help="Image file (repeat for several images).")
    parser.add_argument("--prompt", required=True, help="The question or instruction.")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--num-image-tokens", type=int, default=None, help="Override visual tokens per image.")
    parser.add_argument("--dicom-frame", type=int, default=0, help="Frame of multi-frame DICOM files.")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available).")


def answer(model, processor, images: list, prompt: str, *, max_new_tokens: int = 32, num_image_tokens=None) -> str:
    """Greedy answer of `model` to `prompt` about `images` (paths, PIL, arrays; DICOM files included)."""
    import torch

    from infimed.processing.image_io import load_image

    frame = getattr(processor.image_processor, "dicom_frame", 0)
    pil_images = [load_image(image, frame=frame) for image in images]
    content = [{"type": "image"} for _ in pil_images] + [{"type": "text", "text": prompt}]
    kwargs = {"num_image_tokens": num_image_tokens} if num_image_tokens else {}
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": content}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"images": pil_images or None, **kwargs},
    ).to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    with torch.inference_mode():
        output = model.generate(**inputs, **kwargs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def main(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import infimed  # noqa: F401  (Auto-class registration)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    processor.image_processor.dicom_frame = args.dicom_frame
    text = answer(
        model,
        processor,
        args.image,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        num_image_tokens=args.num_image_tokens,
    )
    print(text)
    return 0
