"""Pretrained models that need no training (zero-shot)."""
