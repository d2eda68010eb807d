"""A pretrained video-text model with no training: I3D Kinetics-400 + MiniLM, zero-shot.

- Classification: I3D's own Kinetics-400 softmax over 32 frames at 224 px.
- Retrieval: videos and free text in one 384-d space. Each of the 400 classes gets a text
  prototype: the MiniLM embeddings of its name alone and in "a video of {}", averaged and
  normalized. A video's embedding is its class probabilities spread
  over those prototypes, `normalize(p @ prototypes)`; a text's embedding is its own
  normalized MiniLM embedding. So "someone strumming a guitar" finds a video that I3D
  calls "playing guitar", though neither shares a word with the other.

`build_kinetics()` returns the pieces `kmm.serving.export` turns into the same five
signatures as a trained model (`serving_default`, `classify_jpeg`, `embed_video`,
`embed_text`, `search`); `kmm export --pretrained kinetics` writes it.

Example:

>>> from kmm.pretrained.kinetics import export_kinetics
>>> path = export_kinetics("saved_models", videos=["clip.mp4"])  # doctest: +SKIP
"""

import dataclasses
from pathlib import Path

import keras
import tensorflow as tf

from kmm import specs
from kmm.hub.hub_layer import HubLayer
from kmm.serving.preprocess import DEFAULT_LIMITS

NAME = "kinetics"
VIDEO_HANDLE = specs.HANDLE_SCHEME + specs.I3D_KINETICS_400
TEXT_HANDLE = specs.HANDLE_SCHEME + specs.MINILM_L6
NUM_FRAMES = 32  # uniformly over the clip; I3D's receptive field is 2 x 7 x 7 mixed_5c cells
FRAME_SIZE = 224
PROMPTS = ("{}", "a video of {}")  # the best of four sets on paraphrased queries (benchmarks/zero_shot.py)


@dataclasses.dataclass(frozen=True)
class PretrainedConfig:
    """What the serving signatures and warmup requests need to know of a model."""

    labels: tuple
    num_frames: int = NUM_FRAMES
    frame_size: int = FRAME_SIZE
    video_encoder: str = VIDEO_HANDLE
    text_encoder: str = TEXT_HANDLE
    prompts: tuple = PROMPTS


def _normalize(x):
    return tf.math.l2_normalize(x, axis=-1)


def class_prototypes(text_encoder, labels, prompts=PROMPTS, batch_size=128):
    """`(classes, dim)` unit-norm text prototypes: each label's prompts embedded, averaged."""
    texts = [p.format(label) for label in labels for p in prompts]
    embedded = tf.concat(
        [_normalize(text_encoder(tf.constant(texts[i : i + batch_size]))) for i in range(0, len(texts), batch_size)],
        axis=0,
    )  # (classes * prompts, dim)
    return _normalize(tf.reduce_mean(tf.reshape(embedded, [len(labels), len(prompts), -1]), axis=1))


@keras.saving.register_keras_serializable(package="kmm")
class ProbabilitySpread(keras.layers.Layer):
    """Class probabilities `(b, classes)` -> unit-norm `normalize(p @ prototypes)` `(b, dim)`.

    Args:
        num_classes: int. Number of classes.
        dim: int. Dimension of the text space.
    """

    def __init__(self, num_classes, dim, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.dim = num_classes, dim
        self.prototypes = self.add_weight(shape=(num_classes, dim), initializer="zeros", trainable=False,
                                          name="prototypes")  # fmt: skip

    def call(self, probabilities):
        return keras.ops.normalize(keras.ops.matmul(probabilities, self.prototypes), axis=-1)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dim": self.dim}


class KineticsModels:
    """The callables `kmm.serving.export` expects of a model, and one Keras model holding every weight."""

    def __init__(self, config, video_module, text_module):
        frames = keras.Input((config.num_frames, config.frame_size, config.frame_size, 3), dtype="uint8")
        text = keras.Input((), dtype="string")
        probabilities = video_module(frames)[specs.CLIP_PROBABILITIES]  # (b, 400)
        text_embedding = text_module(text)  # (b, dim)
        self.spread = ProbabilitySpread(len(config.labels), int(text_embedding.shape[-1]), name="spread")
        self.video_probabilities = keras.Model(frames, probabilities, name="kinetics_classifier")
        self.video_embedder = keras.Model(frames, self.spread(probabilities), name="kinetics_video_embedder")
        self.text_embedder = keras.Model(text, keras.layers.UnitNormalization()(text_embedding), name="text_embedder")
        self.weights_model = keras.Model([frames, text], [self.video_embedder.output, self.text_embedder.output])
        self.num_frames = config.num_frames

    def classifier(self, inputs, training=False):
        """As a trained classifier's outputs; I3D does not read text, so attention is uniform."""
        probabilities = self.video_probabilities(inputs[specs.FRAMES], training=training)
        batch = tf.shape(probabilities)[0]
        return {
            specs.PROBABILITIES: probabilities,
            specs.FRAME_ATTENTION: tf.fill([batch, self.num_frames], 1 / self.num_frames),
        }


def build_kinetics(num_frames=NUM_FRAMES, prompts=PROMPTS):
    """Returns `(KineticsModels, PretrainedConfig)` with the prototypes computed."""
    from kmm.encoders.video_encoder import read_labels
    from kmm.hub.handles import resolve_handle

    labels = tuple(read_labels(resolve_handle(VIDEO_HANDLE)))
    config = PretrainedConfig(labels=labels, num_frames=num_frames, prompts=tuple(prompts))
    video = HubLayer(VIDEO_HANDLE, name="i3d")
    text = HubLayer(TEXT_HANDLE, output_key=specs.POOLED_OUTPUT, name="minilm")
    models = KineticsModels(config, video, text)
    models.spread.prototypes.assign(class_prototypes(text, labels, prompts))
    return models, config


class _LocalEmbedder:
    """Just enough of a `kmm.serving.client.Client` for `VideoIndex.build` to embed a gallery."""

    def __init__(self, models, config):
        self.models, self.config = models, config

    def metadata(self):
        return {"num_frames": self.config.num_frames, "frame_size": self.config.frame_size}

    def embed_video(self, frames):
        return self.models.video_embedder.predict(frames, batch_size=4, verbose=0)

    def embed_text(self, texts):
        return self.models.text_embedder.predict(tf.constant(list(texts)), verbose=0)


def sample_gallery():
    """`(videos, ids, captions)` of the real sample videos (`kmm data samples`): the default gallery."""
    from pathlib import Path

    from kmm.data.manifest import read_manifest
    from kmm.data.samples import fetch_samples

    rows = read_manifest(fetch_samples())
    return [r.video for r in rows], [Path(r.video).name for r in rows], [r.caption for r in rows]


def kinetics_gallery(models, config, videos, ids=None, captions=None, report=None, progress=True):
    """A `kmm.serving.export.Gallery` of `videos` (paths) embedded by the zero-shot video tower.

    Undecodable videos are skipped and recorded in `report` (a `kmm.data.report.DataReport`).
    """
    from kmm.serving.export import Gallery
    from kmm.serving.index import embed_videos

    ids = [str(i) for i in (ids or [Path(v).name for v in videos])]
    captions = list(captions) if captions is not None else [""] * len(videos)
    kept, embeddings, _ = embed_videos(_LocalEmbedder(models, config), videos, batch_size=4, progress=progress,
                                       report=report)  # fmt: skip
    return Gallery(ids=[ids[i] for i in kept], embeddings=embeddings, videos=[str(videos[i]) for i in kept],
                   captions=[captions[i] for i in kept])  # fmt: skip


def _metadata(config, signatures, gallery, k, name, limits):
    import datetime

    import kmm
    from kmm.serving.export import TOP_K

    return {
        "kmm_version": kmm.__version__,
        "kind": "pretrained",
        "name": name,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "labels": list(config.labels),
        "num_frames": config.num_frames,
        "frame_size": config.frame_size,
        "frame_encoder": config.video_encoder,
        "text_encoder": config.text_encoder,
        "prompts": list(config.prompts),
        "signatures": sorted(signatures),
        "top_k": TOP_K,
        "gallery": {"size": len(gallery.ids), "k": k} if gallery is not None else None,
        "limits": limits.to_json(),
        "metrics": {},
    }


def export_kinetics(base_dir=specs.EXPORT_BASE, name=NAME, videos=None, ids=None, captions=None, k=10,
                    report=None, log=None, progress=True, limits=DEFAULT_LIMITS):  # fmt: skip
    """Writes the zero-shot Kinetics model as `base_dir/name/<next version>/`; returns that path.

    Args:
        base_dir: str or Path. TF Serving's model base directory. Defaults to `"saved_models"`.
        name: str. Model name. Defaults to `"kinetics"`.
        videos: list of paths or None. The `search` signature's gallery; None: no `search`.
        ids, captions: lists or None. Gallery ids (default: file names) and captions.
        k: int. Results per `search` query. Defaults to `10`.
        report: `kmm.data.report.DataReport` or None. Records videos that could not be decoded.
        limits: `kmm.serving.preprocess.Limits`. Caps on one request.
    """
    from kmm.serving.export import serving_root, write_export

    models, config = build_kinetics()
    gallery = kinetics_gallery(models, config, videos, ids, captions, report, progress) if videos else None
    root, fns, signatures, k = serving_root(models, config, models.weights_model, gallery, k, limits)
    meta = _metadata(config, fns, gallery, k, name, limits)
    inputs = {s: [x.name for x in spec] for s, (_, spec) in fns.items()}
    return write_export(root, signatures, meta, base_dir, name, gallery=gallery, warmup_inputs=inputs,
                        warmup_config=config, log=log)  # fmt: skip
