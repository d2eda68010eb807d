"""Small local SavedModels with the signatures, shapes and value ranges of real TF-Hub models.

They cannot be downloaded here, so kmm's adapters are tested against look-alikes:
- S3D MIL-NCE (tfhub.dev/deepmind/mil-nce/s3d/1): signatures `video` (float [0, 1]
  `(b, t, h, w, 3)` -> `video_embedding` (b, 512), `mixed_5c` (b, 1024)) and `text`
  (string `(b,)` -> `text_embedding` (b, 512)).
- I3D Kinetics-400 (tfhub.dev/deepmind/i3d-kinetics-400/1): signature `default`
  (float [0, 1] `(b, t, 224, 224, 3)` -> `default` logits (b, 400)).
- MoViNet A0 base (tfhub.dev/tensorflow/movinet/a0/base/kinetics-600/classification/3):
  signature `serving_default` (`image` float [0, 1] -> `classifier_head` (b, 600)).
- BERT (tfhub.dev/tensorflow/bert_en_uncased_preprocess/3 + bert_en_uncased_L-12_H-768_A-12/4):
  a callable preprocessor (string `(b,)` -> `input_word_ids`, `input_mask`, `input_type_ids`
  int32 `(b, 128)`) and a reusable encoder taking that dict -> `pooled_output` (b, 768),
  `sequence_output` (b, 128, 768).
Each video model asserts its value range, so an adapter that feeds uint8 fails loudly.
"""

import tensorflow as tf


def _check_unit_range(x):
    tf.debugging.assert_greater_equal(x, 0.0, message="frames must be in [0, 1]")
    tf.debugging.assert_less_equal(x, 1.0, message="frames must be in [0, 1]")


class _VideoModel(tf.Module):
    def __init__(self, dim):
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal([3, dim], seed=[1, 2]))

    def project(self, video):
        _check_unit_range(video)
        pooled = tf.reduce_mean(video, axis=[1, 2, 3])  # (b, 3)
        return pooled @ self.w


def save_s3d(path):
    m = _VideoModel(1024)
    m.proj512 = tf.Variable(tf.random.stateless_normal([1024, 512], seed=[3, 4]) / 32)
    m.table = tf.Variable(tf.random.stateless_normal([1000, 512], seed=[5, 6]))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.float32)])
    def video(x):
        mixed = m.project(x)
        return {"mixed_5c": mixed, "video_embedding": mixed @ m.proj512}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def text(words):
        tokens = tf.strings.split(tf.strings.lower(words))
        ids = tf.strings.to_hash_bucket_fast(tokens, 1000)
        emb = tf.reduce_sum(tf.gather(m.table, ids), axis=1)  # (b, 512)
        return {"text_embedding": emb.to_tensor() if isinstance(emb, tf.RaggedTensor) else emb}

    tf.saved_model.save(m, str(path), signatures={"video": video, "text": text})


def save_i3d(path):
    m = _VideoModel(400)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 224, 224, 3], tf.float32)])
    def default(rgb_input):
        return {"default": m.project(rgb_input)}

    tf.saved_model.save(m, str(path), signatures={"default": default})


def save_movinet(path):
    m = _VideoModel(600)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.float32, name="image")])
    def serve(image):
        return {"classifier_head": m.project(image)}

    tf.saved_model.save(m, str(path), signatures={"serving_default": serve})


def save_bert(preprocess_path, encoder_path, seq_length=128, hidden=768):
    pre = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def preprocess(text):
        tokens = tf.strings.split(tf.strings.lower(text))
        ids = tf.strings.to_hash_bucket_fast(tokens, 30000) + 1000
        cls = tf.fill([tf.shape(text)[0], 1], tf.constant(101, tf.int64))
        sep = tf.fill([tf.shape(text)[0], 1], tf.constant(102, tf.int64))
        ids = tf.concat([cls, ids[:, : seq_length - 2], sep], axis=1)
        word_ids = tf.cast(ids.to_tensor(shape=[None, seq_length]), tf.int32)
        return {
            "input_word_ids": word_ids,
            "input_mask": tf.cast(word_ids > 0, tf.int32),
            "input_type_ids": tf.zeros_like(word_ids),
        }

    pre.__call__ = preprocess
    tf.saved_model.save(pre, str(preprocess_path))

    enc = tf.train.Checkpoint()
    table = tf.Variable(tf.random.stateless_normal([32000, hidden], seed=[7, 8]) * 0.02)
    enc.variables = [table]
    enc.trainable_variables = [table]
    enc.regularization_losses = []
    spec = {k: tf.TensorSpec([None, seq_length], tf.int32) for k in ("input_word_ids", "input_mask", "input_type_ids")}

    @tf.function
    def call(inputs, training=False):
        seq = tf.gather(table, inputs["input_word_ids"])  # (b, 128, 768)
        mask = tf.cast(inputs["input_mask"], tf.float32)[..., None]
        pooled = tf.tanh(tf.reduce_sum(seq * mask, 1) / tf.reduce_sum(mask, 1))
        return {"pooled_output": pooled, "sequence_output": seq, "default": pooled}

    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    enc.__call__ = call
    tf.saved_model.save(enc, str(encoder_path))
