"""Readers for pretrained weight files that need neither PyTorch nor network access."""

from kmm.weights.numpy_pickle_reader import read_numpy_pickle
from kmm.weights.safetensors_reader import read_safetensors
from kmm.weights.torch_legacy_reader import UnsafePickleError, read_torch_legacy

__all__ = ["read_numpy_pickle", "read_safetensors", "read_torch_legacy", "UnsafePickleError"]
