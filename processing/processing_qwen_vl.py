"""`QwenVLImageTextProcessor`: Qwen2.5-VL's processor for images and text, without its video processor.

transformers 5.23 builds `Qwen2_5_VLProcessor` only with a video processor, and its video processors need
torchvision; CPU machines (tests, the `tiny-qwen2.5-vl` preset) often have no CPU build of it. Images and text
never touch the video processor, so this subclass drops that one part and keeps everything else of Qwen's processor
(the `<|image_pad|>` expansion to each image's grid, `mm_token_type_ids`, the chat template).

`infimed.processing` registers it with `AutoProcessor`, which then finds it by the `processor_class` name a saved
checkpoint records: `AutoProcessor.from_pretrained(folder)` loads it once InfiMed is imported, with no remote code.
Real Qwen2.5-VL checkpoints name `Qwen2_5_VLProcessor` and keep Qwen's own processor.
"""

from transformers import Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin

__all__ = ["QwenVLImageTextProcessor"]


class QwenVLImageTextProcessor(Qwen2_5_VLProcessor):
    """[`Qwen2_5_VLProcessor`] with `image_processor` and `tokenizer` only (no `video_processor`, no torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # The token attributes Qwen2_5_VLProcessor.__init__ sets, then the mixin with the two parts this class has.
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.image_token)
        self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

