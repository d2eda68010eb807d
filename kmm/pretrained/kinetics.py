"""A pretrained video-text model with no training: I3D Kinetics-400, EfficientNet-Lite0's
ImageNet-1k objects and MiniLM, zero-shot.

- Classification: I3D's own Kinetics-400 softmax over 32 frames at 224 px.
- Retrieval: videos and free text in one 384-d space, through a concept bank
  (`kmm.pretrained.concepts`): each Kinetics action and each ImageNet object has a MiniLM
  text prototype; a clip's embedding mixes its action probabilities (I3D) and its frames'
  object probabilities (EfficientNet-Lite0, 4 frames) spread over those prototypes; a
  text's embedding is its own normalized MiniLM embedding. So "someone strumming a guitar"
  finds a video I3D calls "playing guitar", and "a cup of coffee" one whose frames show an
  espresso, though neither shares a word with the class name.
- Long videos: `label_segments` labels one window of a long video (actions, objects, the
  embedding); `classify_labels` classifies clips into the caller's own label texts.

`build_kinetics()` returns the pieces `kmm.serving.export` turns into the signatures of a
trained model (`serving_default`, `classify_jpeg`, `embed_video`, `embed_text`, `search`)
plus `label_segments` and `classify_labels`; `kmm export --pretrained kinetics` writes it.

Example:

    >>> from kmm.pretrained.kinetics import export_kinetics
    >>> path = export_kinetics("saved_models", videos=["clip.mp4"])  # doctest: +SKIP
"""

import dataclasses
from pathlib import Path

import keras
import tensorflow as tf

from kmm import specs
from kmm.data.segments import SegmentConfig
from kmm.hub.hub_layer import HubLayer
from kmm.pretrained.concepts import (
    LABEL_TEMPERATURE,
    OBJECT_NAMING,
    OBJECT_PROMPTS,
    OBJECT_WEIGHT,
    ConceptSpread,
    imagenet_classes,
    object_texts,
    prototypes,
)
from kmm.serving.preprocess import DEFAULT_LIMITS

NAME = "kinetics"
VIDEO_HANDLE = specs.HANDLE_SCHEME + specs.I3D_KINETICS_400
FRAME_HANDLE = specs.HANDLE_SCHEME + specs.EFFICIENTNET_LITE0
TEXT_HANDLE = specs.HANDLE_SCHEME + specs.MINILM_L6
OBJECT_FRAMES = 4  # frames per clip the frame encoder looks at for ImageNet objects
TOP_LABELS = 5  # labels of each kind `label_segments` names per window
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
    object_labels: tuple = ()  # ImageNet-1k, in the frame encoder's logit order
    object_encoder: str = FRAME_HANDLE
    object_weight: float = OBJECT_WEIGHT
    object_naming: str = OBJECT_NAMING
    segment_frames: int = SegmentConfig.frames  # frames of one window of a long video


def class_prototypes(text_encoder, labels, prompts=PROMPTS, batch_size=128):
    """`(classes, dim)` unit-norm text prototypes: each label's prompts embedded, averaged."""
    return prototypes(text_encoder, [[label] for label in labels], prompts, batch_size)


@keras.saving.register_keras_serializable(package="kmm")
class FrameObjects(keras.layers.Layer):
    """Clips `(b, T, S, S, 3)` uint8 -> ImageNet probabilities `(b, classes)` of `num_frames` of their frames.

    The frames are spread evenly over the clip (the centre of each of `num_frames` equal
    parts), run through the frame encoder, and their softmax averaged.

    Args:
        frame_encoder: a layer, frames -> `{"logits": (b, n, classes), ...}`.
        num_frames: int. Frames looked at per clip. Defaults to `OBJECT_FRAMES`.
    """

    def __init__(self, frame_encoder, num_frames=None, **kwargs):
        super().__init__(**kwargs)
        self.frame_encoder, self.num_frames = frame_encoder, num_frames or OBJECT_FRAMES

    def call(self, frames):
        length = tf.cast(tf.shape(frames)[1], tf.float32)
        centres = (tf.range(self.num_frames, dtype=tf.float32) + 0.5) * length / self.num_frames
        picked = tf.gather(frames, tf.cast(centres, tf.int32), axis=1)  # (b, num_frames, S, S, 3)
        logits = self.frame_encoder(picked)[specs.FRAME_LOGITS]  # (b, num_frames, classes)
        return tf.reduce_mean(tf.nn.softmax(logits, axis=-1), axis=1)

    def get_config(self):
        return {**super().get_config(), "frame_encoder": keras.layers.serialize(self.frame_encoder),
                "num_frames": self.num_frames}  # fmt: skip

    @classmethod
    def from_config(cls, config):
        config["frame_encoder"] = keras.layers.deserialize(config["frame_encoder"])
        return cls(**config)


class KineticsModels:
    """The callables `kmm.serving.export` expects of a model, and one Keras model holding every weight.

    `concepts` maps clips of any length to `action_probabilities` (I3D, Kinetics-400),
    `object_probabilities` (EfficientNet-Lite0, ImageNet-1k) and their `embedding` in the
    text space (`kmm.pretrained.concepts.ConceptSpread`); `classifier` is I3D alone, as
    before the concept bank.
    """

    def __init__(self, config, video_module, frame_module, text_module):
        frames = keras.Input((None, config.frame_size, config.frame_size, 3), dtype="uint8")
        text = keras.Input((), dtype="string")
        actions = video_module(frames)[specs.CLIP_PROBABILITIES]  # (b, 400)
        objects = FrameObjects(frame_module, name="objects")(frames)  # (b, 1000)
        text_embedding = text_module(text)  # (b, dim)
        self.spread = ConceptSpread(len(config.labels), len(config.object_labels), int(text_embedding.shape[-1]),
                                    config.object_weight, name="spread")  # fmt: skip
        embedding = self.spread([actions, objects])
        self.video_probabilities = keras.Model(frames, actions, name="kinetics_classifier")
        self.video_embedder = keras.Model(frames, embedding, name="concept_video_embedder")
        self.concepts = keras.Model(frames, {"action_probabilities": actions, "object_probabilities": objects,
                                             specs.EMBEDDING: embedding}, name="concepts")  # fmt: skip
        self.text_embedder = keras.Model(text, keras.layers.UnitNormalization()(text_embedding), name="text_embedder")
        self.weights_model = keras.Model([frames, text], [embedding, self.text_embedder.output])
        self.num_frames = config.num_frames

    def classifier(self, inputs, training=False):
        """As a trained classifier's outputs; I3D does not read text, so attention is uniform."""
        probabilities = self.video_probabilities(inputs[specs.FRAMES], training=training)
        batch = tf.shape(probabilities)[0]
        return {
            specs.PROBABILITIES: probabilities,
            specs.FRAME_ATTENTION: tf.fill([batch, self.num_frames], 1 / self.num_frames),
        }


def label_prototypes(text_embedder, labels, prompts=PROMPTS):
    """`(n, dim)` unit-norm prototypes of label texts `[n]` (a tensor), in the graph.

    The same averaging of prompts as the class prototypes (`class_prototypes`), so a user's
    label "playing guitar" gets the same prototype as Kinetics' own class.
    """
    embedded = []
    for prompt in prompts:
        prefix, _, suffix = prompt.partition("{}")
        embedded.append(tf.math.l2_normalize(text_embedder(tf.strings.join([prefix, labels, suffix])), axis=-1))
    return tf.math.l2_normalize(tf.add_n(embedded) / len(prompts), axis=-1)


def concept_signatures(models, config, limits, top=TOP_LABELS):
    """`label_segments` and `classify_labels`: the long-video and own-labels signatures.

    - `label_segments`: `frames` uint8 `[b, T, H, W, 3]` (one window of a long video each,
      resampled to `config.segment_frames`) -> `action_probabilities` `[b, 400]`,
      `object_probabilities` `[b, 1000]`, `embedding` `[b, D]`, and the top `top` of each
      kind as `action_labels`/`action_scores` and `object_labels`/`object_scores`.
    - `classify_labels`: `frames` `[b, T, H, W, 3]` and `labels` string `[n]` (your own
      classes, any words) -> `probabilities` `[b, n]` (softmax of the clip's cosine with each
      label's prototype over `LABEL_TEMPERATURE`) and `similarities` `[b, n]`.
    """
    from kmm.serving import preprocess as P

    actions, objects = tf.constant(list(config.labels)), tf.constant(list(config.object_labels))
    frames_spec = tf.TensorSpec(None, tf.uint8, name=specs.FRAMES)

    def label_segments(frames):
        frames = P.check_frames(frames, limits=limits, num_frames=config.segment_frames)
        out = models.concepts(P.fit_clips(frames, config.segment_frames, config.frame_size), training=False)
        a_scores, a_index = tf.math.top_k(out["action_probabilities"], top)
        o_scores, o_index = tf.math.top_k(out["object_probabilities"], top)
        return {**out, "action_labels": tf.gather(actions, a_index), "action_scores": a_scores,
                "object_labels": tf.gather(objects, o_index), "object_scores": o_scores}  # fmt: skip

    def classify_labels(frames, labels):
        frames = P.check_frames(frames, limits=limits, num_frames=config.num_frames)
        labels = P.check_text(labels, name="labels", limits=limits)
        embedding = models.video_embedder(P.fit_clips(frames, config.num_frames, config.frame_size), training=False)
        similarities = tf.matmul(embedding, label_prototypes(models.text_embedder, labels, config.prompts),
                                 transpose_b=True)  # (b, n)  # fmt: skip
        return {"probabilities": tf.nn.softmax(similarities / LABEL_TEMPERATURE), "similarities": similarities}

    return {
        "label_segments": (label_segments, [frames_spec]),
        "classify_labels": (classify_labels, [frames_spec, tf.TensorSpec(None, tf.string, name="labels")]),
    }


def build_kinetics(num_frames=NUM_FRAMES, prompts=PROMPTS):
    """Returns `(KineticsModels, PretrainedConfig)` with the concept prototypes computed."""
    from kmm.encoders.video_encoder import read_labels
    from kmm.hub.handles import resolve_handle

    labels = tuple(read_labels(resolve_handle(VIDEO_HANDLE)))
    classes = imagenet_classes()
    config = PretrainedConfig(labels=labels, num_frames=num_frames, prompts=tuple(prompts),
                              object_labels=tuple(c.names[0] for c in classes))  # fmt: skip
    video = HubLayer(VIDEO_HANDLE, name="i3d")
    frames = HubLayer(FRAME_HANDLE, name="efficientnet")
    text = HubLayer(TEXT_HANDLE, output_key=specs.POOLED_OUTPUT, name="minilm")
    models = KineticsModels(config, video, frames, text)
    models.spread.action_prototypes.assign(class_prototypes(text, labels, prompts))
    models.spread.object_prototypes.assign(prototypes(text, [object_texts(c, config.object_naming) for c in classes],
                                                      OBJECT_PROMPTS))  # fmt: skip
    return models, config


class _LocalEmbedder:
    """Just enough of a `kmm.serving.client.Client` for `VideoIndex.build` and
    `kmm.moments.analyze` to embed a gallery before the export exists."""

    name = "local"

    def __init__(self, models, config):
        self.models, self.config = models, config
        self.functions = {name: fn for name, (fn, _) in concept_signatures(models, config, limits=None).items()}

    def metadata(self):
        return {"num_frames": self.config.num_frames, "frame_size": self.config.frame_size}

    def signatures(self):
        return dict.fromkeys(self.functions)

    def predict(self, signature, inputs):
        return {k: v.numpy() for k, v in self.functions[signature](*(tf.constant(v) for v in inputs.values())).items()}

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


def kinetics_gallery(models, config, videos, ids=None, captions=None, report=None, progress=True, segments=False):
    """A `kmm.serving.export.Gallery` of `videos` (paths) embedded by the zero-shot video tower.

    `segments=True`: one item per window of each video (`kmm.moments`), ids
    `<id>@<start>-<end>`, so `search` answers where. Undecodable videos are skipped and
    recorded in `report` (a `kmm.data.report.DataReport`).
    """
    from kmm.serving.export import Gallery
    from kmm.serving.index import embed_videos

    ids = [str(i) for i in (ids or [Path(v).name for v in videos])]
    captions = list(captions) if captions is not None else [""] * len(videos)
    if segments:
        from kmm.moments.index import moment_rows

        rows = moment_rows(_LocalEmbedder(models, config), videos, ids, report=report, progress=progress)
        caption_of = dict(zip(map(str, videos), captions, strict=True))
        return Gallery(ids=rows.ids, embeddings=rows.embeddings, videos=rows.videos,
                       captions=[caption_of[v] for v in rows.videos], starts=rows.starts, ends=rows.ends)  # fmt: skip
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
        "object_labels": list(config.object_labels),
        "object_encoder": config.object_encoder,
        "object_weight": config.object_weight,
        "object_naming": config.object_naming,
        "segment_frames": config.segment_frames,
        "label_temperature": LABEL_TEMPERATURE,
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
                    report=None, log=None, progress=True, limits=DEFAULT_LIMITS, segments=False):  # fmt: skip
    """Writes the zero-shot Kinetics model as `base_dir/name/<next version>/`; returns that path.

    Args:
        base_dir: str or Path. TF Serving's model base directory. Defaults to `"saved_models"`.
        name: str. Model name. Defaults to `"kinetics"`.
        videos: list of paths or None. The `search` signature's gallery; None: no `search`.
        ids, captions: lists or None. Gallery ids (default: file names) and captions.
        k: int. Results per `search` query. Defaults to `10`.
        report: `kmm.data.report.DataReport` or None. Records videos that could not be decoded.
        limits: `kmm.serving.preprocess.Limits`. Caps on one request.
        segments: bool. The gallery holds the windows of each video (moments), not whole videos.
    """
    from kmm.serving.export import serving_root, write_export

    models, config = build_kinetics()
    gallery = kinetics_gallery(models, config, videos, ids, captions, report, progress, segments) if videos else None
    extra = lambda lim: concept_signatures(models, config, lim)  # noqa: E731
    root, fns, signatures, k = serving_root(models, config, models.weights_model, gallery, k, limits, extra)
    meta = _metadata(config, fns, gallery, k, name, limits)
    inputs = {s: [x.name for x in spec] for s, (_, spec) in fns.items()}
    return write_export(root, signatures, meta, base_dir, name, gallery=gallery, warmup_inputs=inputs,
                        warmup_config=config, log=log)  # fmt: skip
