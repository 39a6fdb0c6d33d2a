"""InfiMed processor: tokenizer + image processor + chat template.

The processor alone turns each `<image>` placeholder into `num_image_tokens` image tokens (the model only scatters
features into them), so text and features always agree. `num_image_tokens` may be overridden per call to follow the
low-to-high resolution schedule with one checkpoint:

    processor(text="<image>\nIs there a lesion?", images=[img], num_image_tokens=16)

This file travels with saved checkpoints (remote code): it imports only transformers.
"""


from transformers.processing_utils import ImagesKwargs, ProcessingKwargs, ProcessorMixin

__all__ = ["CHAT_TEMPLATE", "InfiMedProcessor"]

# ChatML, as the Qwen LLMs use. `{% generation %}` marks what the assistant says (its text and the closing
# <|im_end|>, so the model learns to stop): `return_assistant_tokens_mask=True` turns it into an assistant mask.
# Each {"type": "image"} block becomes one "<image>" placeholder line.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['content'] is string %}"
    "{%- set parts = [{'type': 'text', 'text': message['content']}] %}"
    "{%- else %}{%- set parts = message['content'] %}{%- endif %}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}"
    "{%- for part in parts %}{%- if part['type'] == 'text' %}{{- part['text'] }}{%- endif %}{%- endfor %}"
    "{{- '<|im_end|>' }}"
    "{% endgeneration %}"
    "{{- '\n' }}"
    "{%- else %}"
    "{%- for part in parts %}"
    "{%- if part['type'] == 'image' %}{{- '<image>\n' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}"
    "{{- '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


class InfiMedImagesKwargs(ImagesKwargs, total=False):
    num_image_tokens: int


class InfiMedProcessorKwargs(ProcessingKwargs, total=False):
    images_kwargs: InfiMedImagesKwargs
    _defaults = {"text_kwargs": {"padding": False}}


class InfiMedProcessor(ProcessorMixin):
    r"""
    Args:
        image_processor (`InfiMedImageProcessor`): resizes and normalises images (PIL, arrays, tensors, files, DICOM).
        tokenizer (`PreTrainedTokenizerFast`): must contain `image_token` as a single token.
        chat_template (`str`, *optional*): defaults to the ChatML template with generation markers.
        num_image_tokens (`int`): image tokens per `<image>` placeholder; must equal the model call's value.
        image_token (`str`): the placeholder string.
    """

    valid_processor_kwargs = InfiMedProcessorKwargs

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template: str | None = None,
        num_image_tokens: int = 729,
        image_token: str = "<image>",
        **kwargs,
    ):
        if tokenizer is None or image_processor is None:
            raise ValueError("InfiMedProcessor needs both an `image_processor` and a `tokenizer`.")
        image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        if image_token_id is None or image_token_id == tokenizer.unk_token_id:
            raise ValueError(
                f"The tokenizer has no `{image_token}` token. Add it with "
                f"`tokenizer.add_special_tokens({{'additional_special_tokens': ['{image_token}']}})` and resize the "
                "model's embeddings, or build the checkpoint with `infimed init`."
            )
        if num_image_tokens <= 0:
            raise ValueError(f"`num_image_tokens` must be positive, got {num_image_tokens}.")
        self.image_token = image_token
        self.image_token_id = image_token_id
        self.num_image_tokens = int(num_image_tokens)
        super().__init__(image_processor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE)

    def replace_image_token(self, image_inputs: dict, image_idx: int, num_image_tokens: int | None = None, **kwargs):
        """The text each `<image>` placeholder becomes: `num_image_tokens` copies of the image token."""
        return self.image_token * int(num_image_tokens or self.num_image_tokens)

    def __call__(self, images=None, text=None, **kwargs):
        texts = [text] if isinstance(text, str) else text
        flat_images = _count_images(images)
        if texts is not None:
            num_placeholders = sum(t.count(self.image_token) for t in texts)
            if num_placeholders != flat_images:
                per_sample = [t.count(self.image_token) for t in texts]
                raise ValueError(
                    f"The text has {num_placeholders} `{self.image_token}` placeholders (per sample: {per_sample}) "
                    f"but {flat_images} images were given. Each image needs one placeholder, in order; in chat "
                    'messages use one {"type": "image"} block per image.'
                )
        return super().__call__(images=images, text=text, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def _count_images(images) -> int:
    if images is None:
        return 0
    if isinstance(images, (list, tuple)):
        return sum(_count_images(item) for item in images)
    return 1
