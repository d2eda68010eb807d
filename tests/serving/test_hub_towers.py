import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from kmm.hub.hub_layer import HubLayer
from kmm.serving.client import LocalClient
from kmm.serving.hub_towers import export_towers
from tests.serving.conftest import clips


@pytest.mark.slow  # a fresh process
def test_towers_load_with_hub_and_kmm_hub_layer(exported, tmp_path):
    parts, path, _, _ = exported
    towers = export_towers(parts, tmp_path)
    client = LocalClient(path)
    frames = clips(2, 7, 48, 40, seed=2)
    text = ["the red circle", "a blue square shrinking"]

    video = hub.load(str(towers["video_tower"]))
    text_tower = hub.load(str(towers["text_tower"]))
    np.testing.assert_allclose(video(tf.constant(frames))["embedding"].numpy(), client.embed_video(frames), atol=1e-5)
    np.testing.assert_allclose(text_tower(tf.constant(text))["embedding"].numpy(), client.embed_text(text), atol=1e-5)
    assert len(video.trainable_variables) > 0 and len(video.variables) >= len(video.trainable_variables)

    # Reused inside a new Keras 3 model, fine-tunable.
    inputs = keras.Input((), dtype="string")
    layer = HubLayer(str(towers["text_tower"]), output_key="embedding", trainable=True)
    model = keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))
    np.testing.assert_allclose(layer(tf.constant(text)).numpy(), client.embed_text(text), atol=1e-5)
    assert len(model.trainable_weights) > 2
