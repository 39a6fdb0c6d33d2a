"""`sdpa_varlen`: sdpa on packed rows without the dense block-diagonal mask.

A packed row holds several samples whose `position_ids` restart at 0 and has no `attention_mask`. With `sdpa`,
transformers turns those positions into a dense (B, 1, S, S) mask, so attention over a 768-token row of four
~190-token samples costs as much as one 768-token sequence. Flash-attention varlen and flex attention avoid that on
GPU; this kernel does it wherever `torch.nn.functional.scaled_dot_product_attention` runs (CPU included): its mask
function builds no mask for such rows (as the flash kernels' does), and its attention function splits each row
where the positions restart (as `find_packed_sequence_indices` does) and runs causal sdpa on each sample alone.
Anything else (a padding mask, a KV cache, sliding-window layers, extra mask rules, the vision tower's
bidirectional attention) goes to transformers' own sdpa mask and kernel unchanged.

    model = AutoModelForImageTextToText.from_pretrained(folder, attn_implementation="sdpa_varlen")

`register()` adds the name to transformers' `AttentionInterface` and `AttentionMaskInterface`; importing
`infimed.modeling` calls it (beside the Auto-class registration), `import infimed` does not. The name is not saved in
`config.json` (transformers 5 does not persist `_attn_implementation`), and this file is not among the files a
checkpoint carries for remote code: a checkpoint loads without InfiMed, with `sdpa` by default.
"""

from __future__ import annotations

import weakref

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

SDPA_VARLEN = "sdpa_varlen"

__all__ = ["SDPA_VARLEN", "register", "sample_starts", "sdpa_varlen_attention_forward", "sdpa_varlen_mask"]


def _full_attention_only(config) -> bool:
    layer_types = getattr(config, "layer_types", None) or []
    return all(kind == "full_attention" for kind in layer_types)


def sdpa_varlen_mask(batch_size: int, q_length: int, kv_length: int, q_offset=0, kv_offset=0, mask_function=None,
                     attention_mask: torch.Tensor | None = None, **kwargs):
    """No mask where the rows need none (no padding, no cache offset, plain causal or packed-causal attention):
    the attention function then splits packed rows itself. Otherwise transformers' dense sdpa mask."""
    plain = (attention_mask is None and isinstance(q_offset, int) and isinstance(kv_offset, int)
             and q_offset == 0 and kv_offset == 0 and q_length == kv_length
             and not kwargs.get("use_vmap")  # set by transformers when extra mask rules (or/and functions) apply
             and _full_attention_only(kwargs.get("config")))
    if plain:
        return None
    if mask_function is not None:
        kwargs["mask_function"] = mask_function
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, attention_mask=attention_mask, **kwargs)


def sample_starts(position_ids: torch.Tensor) -> list[list[int]]:
    """Per row, the offsets where a sample starts: position 0 and wherever the positions do not go up by one."""
    if position_ids.dim() == 3:  # M-RoPE (k, B, S): the first row holds the text positions
        position_ids = position_ids[0]
    diff = torch.diff(position_ids, dim=-1)
    starts = [[0] for _ in range(position_ids.shape[0])]
    for row, offset in (diff != 1).nonzero().tolist():
        starts[row].append(offset + 1)
    return starts


# Every decoder layer of one forward gets the same `position_ids` tensor. Finding the sample starts reads the positions
# back to the host (a device sync on GPU), so it is done once per forward: the last tensor seen (weakly referenced,
# so a freed tensor whose id is reused never matches) and its in-place version counter key the cached starts. One
# tuple, replaced whole, so a concurrent forward can never read one tensor's key with another's starts.
_last_starts: tuple = (None, None, None)


def _starts_once_per_forward(position_ids: torch.Tensor) -> list[list[int]]:
    global _last_starts
    if position_ids.is_inference():  # no version counter to tell an in-place change: read them every time
        return sample_starts(position_ids)
    ref, version, starts = _last_starts
    if ref is not None and ref() is position_ids and version == position_ids._version:
        return starts
    starts = sample_starts(position_ids)
    _last_starts = (weakref.ref(position_ids), position_ids._version, starts)
    return starts


def sdpa_varlen_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                                  value: torch.Tensor, attention_mask: torch.Tensor | None, **kwargs):
    """Causal sdpa on each sample of each row; query (B, H, S, D), key/value (B, H_kv, S, D); returns (B, S, H, D)."""
    position_ids = kwargs.get("position_ids")
    length = query.shape[2]
    if (attention_mask is not None or position_ids is None or not getattr(module, "is_causal", False)
            or kwargs.get("is_causal") is False or key.shape[2] != length or kwargs.get("sliding_window")
            or position_ids.shape[-1] != length):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    starts = _starts_once_per_forward(position_ids)
    if all(len(row) == 1 for row in starts):  # nothing packed: one causal sdpa over the batch
        return sdpa_attention_forward(module, query, key, value, None, **kwargs)
    rows = []
    for b, row in enumerate(starts):
        bounds = [*row, length]
        parts = [sdpa_attention_forward(module, query[b:b + 1, :, s:e], key[b:b + 1, :, s:e],
                                        value[b:b + 1, :, s:e], None, **kwargs)[0]
                 for s, e in zip(bounds, bounds[1:])]
        rows.append(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
    return (torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]), None


def register() -> None:
    """Make `attn_implementation="sdpa_varlen"` known to transformers (idempotent)."""
    AttentionInterface.register(SDPA_VARLEN, sdpa_varlen_attention_forward)
    AttentionMaskInterface.register(SDPA_VARLEN, sdpa_varlen_mask)
