"""Data: manifests, video decoding and frame sampling, tokenization, tf.data pipelines."""
