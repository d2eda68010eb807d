"""Padding masks and the one helper that turns them into attention masks.

One vocabulary across kmm's layers: a mask is a bool padding mask, `True` = real position.
A layer over one sequence takes `padding_mask`; a layer over two names each mask after the
input it pads (`query_mask` / `context_mask`, `video_mask` / `text_mask`). Model inputs
use the keys of `kmm.specs` (`text_padding_mask`, `caption_padding_mask`, ...).
"""

from keras import ops


def attention_mask(query_mask, key_mask):
    """`(batch, q)` and `(batch, k)` padding masks -> `(batch, q, k)` attention mask, or None."""
    if query_mask is None and key_mask is None:
        return None
    if key_mask is None:
        return ops.cast(query_mask, "bool")[:, :, None]
    key = ops.cast(key_mask, "bool")[:, None, :]
    if query_mask is None:
        return key
    return ops.logical_and(ops.cast(query_mask, "bool")[:, :, None], key)


def masked_mean(x, mask):
    """Mean over axis 1 of real positions; rows with no real position give 0."""
    if mask is None:
        return ops.mean(x, axis=1)
    w = ops.cast(mask, x.dtype)[..., None]  # (batch, steps, 1)
    return ops.sum(x * w, axis=1) / ops.maximum(ops.sum(w, axis=1), 1.0)


def masked_max(x, mask):
    """Max over axis 1 of real positions; rows with no real position give 0."""
    if mask is None:
        return ops.max(x, axis=1)
    m = ops.cast(mask, "bool")[..., None]
    out = ops.max(ops.where(m, x, ops.full_like(x, -1e9)), axis=1)
    return ops.where(ops.any(m, axis=1), out, ops.zeros_like(out))
