"""A BERT encoder in Keras 3, and the loader for sentence-transformers MiniLM weights.

Built from `keras.layers.MultiHeadAttention` and exact (erf) GELU, so a checkpoint in the
Hugging Face `BertModel` layout reproduces the reference outputs (max |diff| ~1e-6).
"""

import dataclasses

import keras
from keras import ops

from kmm import specs


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Architecture of a BERT encoder.

    Defaults are those of all-MiniLM-L6-v2 (`nreimers/MiniLM-L6-H384-uncased`).
    """

    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_epsilon: float = 1e-12
    dropout: float = 0.1


@keras.saving.register_keras_serializable(package="kmm")
class BertEmbeddings(keras.layers.Layer):
    """Word + absolute position + segment-0 embeddings, then LayerNorm.

    Args:
        vocab_size: int. Size of the WordPiece vocabulary.
        hidden_size: int. Embedding width.
        max_positions: int. Longest sequence the position table covers.
        type_vocab_size: int. Number of segment types (only type 0 is used).
        layer_norm_epsilon: float. LayerNorm epsilon.
    """

    def __init__(self, vocab_size, hidden_size, max_positions, type_vocab_size, layer_norm_epsilon, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_positions = max_positions
        self.type_vocab_size = type_vocab_size
        self.layer_norm_epsilon = layer_norm_epsilon
        self.word = keras.layers.Embedding(vocab_size, hidden_size, name="word_embeddings")
        self.norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="layer_norm")

    def build(self, input_shape):
        self.word.build(input_shape)
        self.position = self.add_weight(
            shape=(self.max_positions, self.hidden_size), initializer="glorot_uniform", name="position_embeddings"
        )
        self.token_type = self.add_weight(
            shape=(self.type_vocab_size, self.hidden_size), initializer="glorot_uniform", name="token_type_embeddings"
        )
        self.norm.build((*input_shape, self.hidden_size))

    def call(self, input_ids):
        length = ops.shape(input_ids)[1]
        x = self.word(input_ids)  # (batch, tokens, hidden)
        x = x + self.position[None, :length] + self.token_type[None, None, 0]
        return self.norm(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            max_positions=self.max_positions,
            type_vocab_size=self.type_vocab_size,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config


def build_bert(config=BertConfig()):
    """Returns a functional BERT: `{input_ids, padding_mask}` -> `(batch, tokens, hidden)`."""
    input_ids = keras.Input((None,), dtype="int32", name=specs.INPUT_IDS)
    padding_mask = keras.Input((None,), dtype="bool", name=specs.PADDING_MASK)
    x = BertEmbeddings(
        config.vocab_size,
        config.hidden_size,
        config.max_positions,
        config.type_vocab_size,
        config.layer_norm_epsilon,
        name="embeddings",
    )(input_ids)
    x = keras.layers.Dropout(config.dropout)(x)
    head_dim = config.hidden_size // config.num_heads
    for i in range(config.num_layers):
        # Only keys are masked, as in BertModel: padded queries still get (ignored) outputs.
        attn = keras.layers.MultiHeadAttention(config.num_heads, head_dim, name=f"layer_{i}_attention")(
            x, x, value_mask=padding_mask
        )
        attn = keras.layers.Dropout(config.dropout)(attn)
        x = keras.layers.LayerNormalization(epsilon=config.layer_norm_epsilon, name=f"layer_{i}_attention_norm")(
            x + attn
        )
        h = keras.layers.Dense(config.intermediate_size, activation="gelu", name=f"layer_{i}_intermediate")(x)
        h = keras.layers.Dense(config.hidden_size, name=f"layer_{i}_output")(h)
        h = keras.layers.Dropout(config.dropout)(h)
        x = keras.layers.LayerNormalization(epsilon=config.layer_norm_epsilon, name=f"layer_{i}_output_norm")(x + h)
    return keras.Model({specs.INPUT_IDS: input_ids, specs.PADDING_MASK: padding_mask}, x, name="bert")


def load_hf_bert_weights(model, tensors, config):
    """Copies Hugging Face `BertModel` tensors (numpy, PyTorch layout) into `build_bert`'s model."""

    def t(name):
        return tensors[name]

    def linear(prefix):
        return t(prefix + ".weight").T, t(prefix + ".bias")

    emb = model.get_layer("embeddings")
    emb.word.embeddings.assign(t("embeddings.word_embeddings.weight"))
    emb.position.assign(t("embeddings.position_embeddings.weight"))
    emb.token_type.assign(t("embeddings.token_type_embeddings.weight"))
    emb.norm.set_weights([t("embeddings.LayerNorm.weight"), t("embeddings.LayerNorm.bias")])
    heads, head_dim = config.num_heads, config.hidden_size // config.num_heads
    for i in range(config.num_layers):
        p = f"encoder.layer.{i}."
        qkv = []
        for part in ("query", "key", "value"):
            w, b = linear(p + "attention.self." + part)
            qkv += [w.reshape(config.hidden_size, heads, head_dim), b.reshape(heads, head_dim)]
        w, b = linear(p + "attention.output.dense")
        model.get_layer(f"layer_{i}_attention").set_weights([*qkv, w.reshape(heads, head_dim, config.hidden_size), b])
        model.get_layer(f"layer_{i}_attention_norm").set_weights(
            [t(p + "attention.output.LayerNorm.weight"), t(p + "attention.output.LayerNorm.bias")]
        )
        model.get_layer(f"layer_{i}_intermediate").set_weights(list(linear(p + "intermediate.dense")))
        model.get_layer(f"layer_{i}_output").set_weights(list(linear(p + "output.dense")))
        model.get_layer(f"layer_{i}_output_norm").set_weights(
            [t(p + "output.LayerNorm.weight"), t(p + "output.LayerNorm.bias")]
        )
