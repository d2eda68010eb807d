"""A plain-numpy BertModel forward pass: the test reference for `kmm.encoders.bert`.

Written straight from the Hugging Face `BertModel` equations, independent of Keras.
"""

import numpy as np

from kmm.encoders.bert import BertConfig


def numpy_bert_reference(tensors, input_ids, config=BertConfig()):
    """`BertModel`'s last hidden state `(tokens, hidden)` for one unpadded sequence, in float64."""
    from math import erf, sqrt

    gelu = np.vectorize(lambda v: 0.5 * v * (1.0 + erf(v / sqrt(2.0))))

    def norm(x, prefix):
        mu = x.mean(-1, keepdims=True)
        var = x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + config.layer_norm_epsilon) * tensors[prefix + ".weight"] + tensors[
            prefix + ".bias"
        ]

    def lin(x, prefix):
        return x @ tensors[prefix + ".weight"].T + tensors[prefix + ".bias"]

    ids = np.asarray(input_ids)
    n = len(ids)
    x = (
        tensors["embeddings.word_embeddings.weight"][ids]
        + tensors["embeddings.position_embeddings.weight"][:n]
        + tensors["embeddings.token_type_embeddings.weight"][0]
    )
    x = norm(x.astype(np.float64), "embeddings.LayerNorm")
    heads, d = config.num_heads, config.hidden_size // config.num_heads
    for i in range(config.num_layers):
        p = f"encoder.layer.{i}."
        q, k, v = (
            lin(x, p + "attention.self." + s).reshape(n, heads, d).transpose(1, 0, 2) for s in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(d)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        ctx = (scores @ v).transpose(1, 0, 2).reshape(n, config.hidden_size)
        x = norm(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        h = lin(gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
        x = norm(x + h, p + "output.LayerNorm")
    return x
