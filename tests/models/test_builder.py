import itertools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmm
from kmm import specs
from kmm.models.builder import build_end_to_end, build_feature_model, build_parts, caption_inputs
from kmm.models.config import FUSIONS, PRESETS, TEMPORAL_MODELS, TEXT_EMBEDDINGS, VIDEO_EMBEDDINGS, ModelConfig

LABELS = ("left", "right", "still")
FEATURE_DIM, TEXT_DIM = 256, 32  # 64 cells x 4 channels (the tiny preset)


def _inputs(n=4, frames=4, tokens=5, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((n, tokens), bool)
    mask[0, 2:] = False
    return {
        "video_features": rng.normal(size=(n, frames, FEATURE_DIM)).astype("float32"),
        specs.TEXT_TOKENS: rng.normal(size=(n, tokens, TEXT_DIM)).astype("float32"),
        specs.TEXT_PADDING_MASK: mask,
        "caption_embedding": rng.normal(size=(n, TEXT_DIM)).astype("float32"),
        "caption_tokens": rng.normal(size=(n, tokens + 2, TEXT_DIM)).astype("float32"),
        "caption_padding_mask": np.arange(tokens + 2)[None, :] < rng.integers(1, tokens + 3, size=(n, 1)),
    }


def _for(config, x):
    from kmm.features.arrays import model_inputs

    return model_inputs(x, config)


def _with_row(x, key, row, seed, where=slice(None)):
    """`x` with `x[key][row][where]` replaced by fresh noise."""
    changed = {k: np.array(v) for k, v in x.items()}
    rng = np.random.default_rng(seed)
    changed[key][row][where] = rng.normal(size=changed[key][row][where].shape)
    return changed


def _head_inputs(parts, x):
    """The classification head's inputs for feature-model inputs `x`, as `_heads` passes them."""
    video = parts.video_tower({"video_features": x["video_features"]})
    inputs = {k: tf.convert_to_tensor(x[k]) for k in (specs.TEXT_TOKENS, specs.TEXT_PADDING_MASK)}
    return inputs | {k: video[k] for k in parts.head.input if k not in inputs}


def _attended_video(parts):
    """Feature-model inputs -> the head's attended video summary (what `fused` concatenates to the pooled text)."""
    summary = keras.Model(parts.head.input, parts.head.get_layer("fused").input[0])
    return lambda x: summary(_head_inputs(parts, x)).numpy()


@pytest.mark.parametrize("temporal, fusion", list(itertools.product(TEMPORAL_MODELS, FUSIONS)))
def test_every_option_reads_what_it_should_and_nothing_else(temporal, fusion):
    config = PRESETS["tiny"].replace(labels=LABELS, temporal=temporal, fusion=fusion)
    parts = build_parts(config, FEATURE_DIM, TEXT_DIM)
    model = build_feature_model(parts, FEATURE_DIM, TEXT_DIM)
    x = {k: np.asarray(v) for k, v in _for(config, _inputs()).items()}
    out = {k: v.numpy() for k, v in model(x).items()}
    assert out["logits"].shape == (4, 3) and out["similarity"].shape == (4, 4)
    np.testing.assert_allclose(out["frame_attention"].sum(1), 1, atol=1e-5)

    def moved(a, b):
        return np.abs(a - b).max() > 1e-4

    # Row 1's question text: fused models answer differently for row 1 and only for row 1;
    # fusion="none" classifies from the video alone.
    text = model(_with_row(x, specs.TEXT_TOKENS, 1, seed=1))["logits"].numpy()
    assert moved(text[1], out["logits"][1]) == (fusion != "none")
    np.testing.assert_allclose(np.delete(text, 1, 0), np.delete(out["logits"], 1, 0), atol=1e-5)
    if fusion in ("cross_attention", "co_attention", "text_guided"):  # the attention reads the text itself,
        # not only the pooled text concatenated after it: the attended video summary moves.
        attended = _attended_video(parts)
        before, after = attended(x), attended(_with_row(x, specs.TEXT_TOKENS, 1, seed=1))
        assert moved(after[1], before[1])
        np.testing.assert_allclose(np.delete(after, 1, 0), np.delete(before, 1, 0), atol=1e-5)
    # Row 0's padded tokens (its mask ends after 2 tokens) are read by no option.
    padded = model(_with_row(x, specs.TEXT_TOKENS, 0, seed=2, where=slice(2, None)))["logits"].numpy()
    np.testing.assert_allclose(padded, out["logits"], atol=1e-5)
    # Row 2's video: its logits and its similarity row move; no other clip's do.
    video = {k: v.numpy() for k, v in model(_with_row(x, "video_features", 2, seed=3)).items()}
    assert moved(video["logits"][2], out["logits"][2]) and moved(video["similarity"][2], out["similarity"][2])
    np.testing.assert_allclose(np.delete(video["similarity"], 2, 0), np.delete(out["similarity"], 2, 0), atol=1e-5)


@pytest.mark.parametrize("temporal, cells", [("lstm", 64), ("lstm", 32), ("transformer", 64)])
def test_frame_tokens_and_cell_positions_follow_the_temporal_model_and_the_grid(temporal, cells):
    config = PRESETS["tiny"].replace(labels=LABELS, temporal=temporal, spatial_cells=cells)
    parts = build_parts(config, FEATURE_DIM, TEXT_DIM)
    names = {layer.name for layer in parts.video_tower.layers}
    from_cells = temporal == "lstm"  # an LSTM's frame tokens come from the cell tokens
    assert ("frame_cell_summary" in names) == from_cells and ("feature_norm" in names) == (not from_cells)
    slot_width = parts.video_tower.get_layer("slot_tracks").input.shape[-1]
    assert config.cell_positions == (cells == 64)  # positions on a square grid only
    assert slot_width == config.dim + 3 * config.cell_positions  # x, y, radius
    out = build_feature_model(parts, FEATURE_DIM, TEXT_DIM)(_for(config, _inputs()))
    assert out["logits"].shape == (4, 3) and np.isfinite(out["similarity"].numpy()).all()


@pytest.mark.parametrize("temporal", ["lstm", "transformer"])
def test_feature_norm_is_fixed_but_saved_weights_still_load(temporal, tmp_path):
    config = PRESETS["tiny"].replace(labels=LABELS, temporal=temporal)
    parts = build_parts(config, FEATURE_DIM, TEXT_DIM)
    model = build_feature_model(parts, FEATURE_DIM, TEXT_DIM)
    norms = [layer for layer in parts.video_tower.layers if layer.name.endswith("feature_norm")]
    assert norms and all(not n.trainable and len(n.weights) == 2 for n in norms)
    trainable = {id(w) for w in model.trainable_weights}
    assert not [w for n in norms for w in n.weights if id(w) in trainable]
    # A model trained before the norm was fixed saved a scale and shift: they load and count.
    x = _for(config, _inputs())
    before = model(x)["similarity"].numpy()
    for n in norms:
        n.gamma.assign(n.gamma * 3.0)
        n.beta.assign(n.beta + 0.5)
    model.save_weights(tmp_path / "trained.weights.h5")
    rebuilt = build_feature_model(build_parts(config, FEATURE_DIM, TEXT_DIM), FEATURE_DIM, TEXT_DIM)
    rebuilt.load_weights(tmp_path / "trained.weights.h5")
    after = rebuilt(x)["similarity"].numpy()
    np.testing.assert_allclose(after, model(x)["similarity"].numpy(), atol=1e-5)
    assert not np.allclose(after, before, atol=1e-3)


@pytest.mark.parametrize("video_embedding, text_embedding", list(itertools.product(VIDEO_EMBEDDINGS, TEXT_EMBEDDINGS)))
def test_every_retrieval_option_builds_and_ranks(video_embedding, text_embedding, tmp_path):
    config = PRESETS["tiny"].replace(labels=LABELS, video_embedding=video_embedding, text_embedding=text_embedding)
    parts = build_parts(config, FEATURE_DIM, TEXT_DIM)
    model = build_feature_model(parts, FEATURE_DIM, TEXT_DIM)
    x = _for(config, _inputs())
    similarity = model(x)["similarity"].numpy()
    assert similarity.shape == (4, 4) and np.isfinite(similarity).all()
    # Padding is invisible: more padded caption tokens give the same embeddings.
    if text_embedding == "tokens":
        padded = dict(x, caption_tokens=np.pad(x["caption_tokens"], ((0, 0), (0, 3), (0, 0)), constant_values=9.0),
                      caption_padding_mask=np.pad(x["caption_padding_mask"], ((0, 0), (0, 3))))  # fmt: skip
        np.testing.assert_allclose(model(padded)["similarity"], similarity, atol=1e-4)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras")(x)["similarity"], similarity, atol=1e-4)


def test_slots_need_spatial_features_and_old_configs_name_their_version():
    with pytest.raises(ValueError, match="needs spatial features"):
        ModelConfig(spatial_cells=1)
    saved = json.loads(PRESETS["tiny"].to_json())
    assert saved["kmm_version"] == kmm.__version__
    assert ModelConfig.from_json(json.dumps(saved)) == PRESETS["tiny"]
    # kmm 0.1 wrote no version; 0.1 to 0.3.0 models are not built any more: the error says
    # which version wrote the file and which commit still builds it.
    old = {k: v for k, v in saved.items() if k != "kmm_version"}
    versions = [("0.1", old, "d4f8e7f")] + [
        (v, dict(old, kmm_version=v), c) for v, c in (("0.2.0", "1393e9d"), ("0.3.0", "8d95c19"))
    ]
    for version, data, commit in versions:
        with pytest.raises(ValueError, match=rf"run/config.json was written by kmm {version};.*commit {commit}\."):
            ModelConfig.from_json(json.dumps(data), source="run/config.json")
    with pytest.raises(ValueError, match=r"unknown ModelConfig field\(s\) \['colour'\]"):
        ModelConfig.from_json(json.dumps(dict(saved, colour="red")))


@pytest.mark.parametrize("tasks", [("classification",), ("retrieval",)])
def test_single_task_variants(tasks):
    parts = build_parts(PRESETS["tiny"].replace(labels=LABELS, tasks=tasks), FEATURE_DIM, TEXT_DIM)
    out = build_feature_model(parts, FEATURE_DIM, TEXT_DIM)(_for(parts.config, _inputs()))
    assert set(out) == ({"logits", "frame_attention"} if tasks == ("classification",) else {"similarity"})


def test_config_validation_and_json_round_trip():
    with pytest.raises(ValueError, match="temporal must be one of"):
        ModelConfig(temporal="conv")
    with pytest.raises(ValueError, match="needs `ModelConfig.labels`"):
        build_parts(ModelConfig(), FEATURE_DIM, TEXT_DIM)
    config = PRESETS["tiny"].replace(labels=LABELS, fusion="concat")
    assert ModelConfig.from_json(config.to_json()) == config


def test_fit_reduces_the_loss():
    """Labels depend on the order of frames (a 'direction'), which mean pooling cannot see."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    n = 256
    base = rng.normal(size=(n, 1, FEATURE_DIM)).astype("float32")
    ramp = np.linspace(-1, 1, 4, dtype="float32")[None, :, None]
    labels = rng.integers(0, 2, size=n)
    direction = np.where(labels[:, None, None] == 1, ramp, -ramp)
    x = _inputs(n)
    x["video_features"] = base + 2 * direction * rng.normal(size=(1, 1, FEATURE_DIM)).astype("float32")
    config = PRESETS["tiny"].replace(
        labels=("a", "b"), temporal="transformer", fusion="none", dropout=0.0, tasks=("classification",)
    )
    x = _for(config, x)
    parts = build_parts(config, FEATURE_DIM, TEXT_DIM)
    model = build_feature_model(parts, FEATURE_DIM, TEXT_DIM)
    from kmm.train.trainer import _compile

    view = _compile(model, config, 3e-3, 0.0, steps=400)
    y = {"logits": labels}
    before = view.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    view.fit(x, y, batch_size=32, epochs=12, verbose=0)
    after = view.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert after["loss"] < 0.5 * before["loss"]
    acc = after.get("logits_acc", after.get("acc"))
    assert acc > 0.9, after


def test_end_to_end_models_share_the_trained_parts(tiny_encoders, tmp_path):
    from kmm.hub.encoders import TextEncoder, VideoEncoder

    config = PRESETS["tiny"].replace(labels=LABELS)
    frames = tf.constant(np.random.default_rng(0).integers(0, 256, size=(2, 4, 32, 32, 3), dtype=np.uint8))
    feature_dim = VideoEncoder(config.frame_encoder, config.frame_convention)(frames)[specs.VIDEO_TOKENS].shape[-1]
    parts = build_parts(config, feature_dim, 32)
    models = build_end_to_end(parts)
    text = tf.constant(["the red circle", ""])
    out = models.classifier({specs.FRAMES: frames, specs.TEXT: text})
    np.testing.assert_allclose(out["probabilities"].numpy().sum(1), 1, atol=1e-5)
    # The classifier equals the feature model fed with the encoders' outputs.
    v = VideoEncoder(config.frame_encoder, config.frame_convention)(frames)[specs.VIDEO_TOKENS]
    t = TextEncoder(config.text_encoder)(text)
    feats = {"video_features": v, specs.TEXT_TOKENS: t[specs.TEXT_TOKENS],
             specs.TEXT_PADDING_MASK: t[specs.TEXT_PADDING_MASK], **caption_inputs(config, t)}  # fmt: skip
    logits = build_feature_model(parts, feature_dim, 32)(feats)["logits"]
    np.testing.assert_allclose(out["probabilities"], keras.ops.softmax(logits), atol=1e-5)
    emb = models.video_embedder(frames).numpy()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    models.classifier.save(tmp_path / "classifier.keras")
    reloaded = keras.models.load_model(tmp_path / "classifier.keras")
    np.testing.assert_allclose(reloaded({specs.FRAMES: frames, specs.TEXT: text})["probabilities"],
                               out["probabilities"], atol=1e-5)  # fmt: skip


def test_spatial_cells_is_derived_from_the_encoder_and_a_wrong_count_is_refused(tiny_encoders):
    from kmm.models.builder import with_encoder_grid

    config = PRESETS["tiny"].replace(spatial_cells=None)  # 32 px frames, tiny encoder: an 8x8 grid
    assert with_encoder_grid(config).spatial_cells == 64
    assert build_parts(config.replace(labels=LABELS), FEATURE_DIM, TEXT_DIM).config.spatial_cells == 64
    # 16 divides the feature width, so without the check the towers would reshape it silently.
    with pytest.raises(ValueError, match=r"spatial_cells=16, but kmm://tiny-frames@32 .* gives 64 cell\(s\)"):
        with_encoder_grid(config.replace(spatial_cells=16))
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():  # no eager probe in a scope
        assert with_encoder_grid(config.replace(spatial_cells=64)).spatial_cells == 64
        with pytest.raises(RuntimeError, match="before entering"):
            with_encoder_grid(config)


def test_text_guided_head_reads_the_video_embedding():
    """The text-guided head's logits move with the video tower's embedding alone, the other
    head inputs held fixed (a head that dropped it would give the same logits)."""
    parts = build_parts(PRESETS["tiny"].replace(labels=LABELS), FEATURE_DIM, TEXT_DIM)
    inputs = _head_inputs(parts, _inputs())
    assert specs.VIDEO_EMBEDDING in inputs
    logits = parts.head(inputs)["logits"].numpy()
    other = tf.roll(inputs[specs.VIDEO_EMBEDDING], shift=1, axis=0)
    moved = parts.head({**inputs, specs.VIDEO_EMBEDDING: other})["logits"].numpy()
    assert np.abs(logits - moved).max() > 1e-3
