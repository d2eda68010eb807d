"""The trained towers as TF-Hub reusable SavedModels, for reuse in other models.

- `text_tower/`: strings `[batch]` in -> `{"embedding": [batch, D]}` (unit norm);
- `video_tower/`: uint8 frames `[batch, T, H, W, 3]` (any T, any H, W >= 16) in ->
  `{"embedding": [batch, D]}` (unit norm), in the same space.

Both load with `hub.load` (the text tower needs `import tensorflow_text`) and inside Keras 3
models with `kmm.hub.HubLayer(path, output_key="embedding")`; `trainable=True` fine-tunes
them (encoder and tower together).

Example:

    >>> import tensorflow_hub as hub, tensorflow_text  # doctest: +SKIP
    >>> text = hub.load("runs/quickstart/towers/text_tower")  # doctest: +SKIP
    >>> text(tf.constant(["a red circle moving left"]))["embedding"].shape  # doctest: +SKIP
    TensorShape([1, 128])
"""

from pathlib import Path

import tensorflow as tf

import kmm
from kmm import specs
from kmm.encoders.reusable_savedmodel import save_reusable_savedmodel
from kmm.serving import preprocess as P

EMBEDDING = specs.EMBEDDING


def export_towers(parts, out_dir, encoders=None):
    """Writes `out_dir/text_tower` and `out_dir/video_tower`; returns `{name: path}`."""
    from kmm.models.builder import build_end_to_end

    if parts.text_tower is None:
        raise ValueError("Tower export needs a model trained with the 'retrieval' task (it has no text tower).")
    config = parts.config
    models = build_end_to_end(parts, encoders=encoders)
    out_dir = Path(out_dir)
    manifest = {"kmm_version": kmm.__version__, "model_config": config.to_json(), "outputs": [EMBEDDING]}

    def video_call(frames, training=False):
        clips = P.fit_clips(P.check_frames(frames, limits=None), config.num_frames, config.frame_size)
        return {EMBEDDING: models.video_embedder(clips, training=training)}

    def text_call(text, training=False):
        return {EMBEDDING: models.text_embedder(P.check_text(text, limits=None), training=training)}

    frames_spec = tf.TensorSpec([None, None, None, None, 3], tf.uint8, name=specs.FRAMES)
    text_spec = tf.TensorSpec([None], tf.string, name=specs.TEXT)
    return {
        "video_tower": save_reusable_savedmodel(
            out_dir / "video_tower", video_call, frames_spec, models.video_embedder,
            manifest={**manifest, "input": "frames uint8 [batch, T, H, W, 3]"},
        ),
        "text_tower": save_reusable_savedmodel(
            out_dir / "text_tower", text_call, text_spec, models.text_embedder,
            manifest={**manifest, "input": "text string [batch]"},
        ),
    }  # fmt: skip
