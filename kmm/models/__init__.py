"""Multimodal models: towers, heads, and the functions that build them from a `ModelConfig`."""
