import numpy as np
import pytest
import tensorflow as tf

from kmm import specs
from kmm.data.manifest import read_manifest
from kmm.data.pipeline import DataConfig, build_dataset
from kmm.data.synth import generate
from kmm.data.text import add_tokens, tokenizer_for


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate.generate(tmp_path_factory.mktemp("shapes"), generate.PRESETS["tiny"], workers=1, progress=False)


def test_tokens_in_tf_data_equal_the_encoders_own(tiny_encoders, shapes):
    from kmm.hub.handles import load_module

    rows = read_manifest(shapes)[:8]
    ds = add_tokens(build_dataset(rows, config=DataConfig(4, 32, batch_size=8)), tokenizer_for("kmm://tiny-text"))
    batch = next(iter(ds))
    own = load_module("kmm://tiny-text").tokenize(batch[specs.CAPTION])
    np.testing.assert_array_equal(batch["caption_ids"], own[specs.INPUT_IDS])
    np.testing.assert_array_equal(batch["caption_mask"], own[specs.PADDING_MASK])


def test_synth_batch_feeds_the_offline_encoders_end_to_end(tiny_encoders, shapes):
    from kmm.hub.encoders import TextEncoder, VideoEncoder

    rows = read_manifest(shapes)
    batch = next(iter(build_dataset(rows, generate.label_names(), DataConfig(4, 32, batch_size=4))))
    video = VideoEncoder("kmm://tiny-frames")(batch[specs.FRAMES])
    text = TextEncoder("kmm://tiny-text")(batch[specs.CAPTION])
    assert video[specs.VIDEO_TOKENS].shape == (4, 4, 32) and text[specs.TEXT_EMBEDDING].shape == (4, 32)
    assert np.isfinite(video[specs.VIDEO_EMBEDDING]).all()


def test_cache_refuses_to_freeze_random_sampling(shapes):
    rows = read_manifest(shapes)
    with pytest.raises(ValueError, match="freeze the random frame sampling"):
        build_dataset(rows, config=DataConfig(4, 32, sampling="random_segment", cache=True), training=True)
    ds = build_dataset(rows, config=DataConfig(4, 32, cache=True))
    first = [b[specs.FRAMES].numpy() for b in ds]
    second = [b[specs.FRAMES].numpy() for b in ds]
    assert all((a == b).all() for a, b in zip(first, second, strict=True))
    assert isinstance(ds, tf.data.Dataset)
