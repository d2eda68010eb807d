"""The concept bank's pieces: ImageNet's names, prototypes, and the action + object spread."""

import numpy as np
import pytest
import tensorflow as tf

from kmm.pretrained.concepts import ConceptSpread, imagenet_classes, object_texts, prototypes
from tests.helpers import run_layer_test


def test_imagenet_classes_are_in_the_frame_encoders_order():
    classes = imagenet_classes()
    assert len(classes) == 1000 and len({c.wnid for c in classes}) == 1000
    assert classes[967].names[0] == "espresso" and classes[849].names[0] == "teapot"
    assert classes[817].names == ("sports car", "sport car")
    assert all(c.names[0] and c.gloss for c in classes)


def test_object_texts():
    tabby = imagenet_classes()[281]
    assert object_texts(tabby, "first") == ["tabby"]
    assert object_texts(tabby, "synonyms") == ["tabby", "tabby cat"]
    assert object_texts(tabby, "gloss") == ["tabby", "tabby, a cat with a grey or tawny coat mottled with black"]
    with pytest.raises(ValueError, match="choose from"):
        object_texts(tabby, "wordnet")


def test_prototypes_average_every_name_in_every_prompt():
    table = {"a": [1.0, 0.0], "b": [0.0, 1.0], "x a": [1.0, 1.0], "x b": [0.0, 2.0]}

    def encoder(texts):
        return tf.constant([table[t.decode()] for t in texts.numpy()], tf.float32)

    got = prototypes(encoder, [["a"], ["a", "b"]], ("{}", "x {}")).numpy()
    unit = lambda v: np.asarray(v) / np.linalg.norm(v)  # noqa: E731
    first = unit(unit([1, 0]) + unit([1, 1]))
    second = unit(unit([1, 0]) + unit([1, 1]) + unit([0, 1]) + unit([0, 2]))
    np.testing.assert_allclose(got, [first, second], atol=1e-6)


def _spread(weight=0.25):
    layer = ConceptSpread(3, 4, 2, object_weight=weight)
    rng = np.random.default_rng(0)
    layer.action_prototypes.assign(rng.normal(size=(3, 2)).astype("float32"))
    layer.object_prototypes.assign(rng.normal(size=(4, 2)).astype("float32"))
    return layer


def test_concept_spread_is_the_formula():
    layer = _spread()
    actions, objects = np.array([[0.7, 0.2, 0.1]], "float32"), np.array([[0.1, 0.1, 0.1, 0.7]], "float32")
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    a, o = unit(actions @ layer.action_prototypes.numpy()), unit(objects @ layer.object_prototypes.numpy())
    np.testing.assert_allclose(layer([actions, objects]), unit(0.75 * a + 0.25 * o), atol=1e-6)
    only_actions = _spread(weight=0.0)
    np.testing.assert_allclose(only_actions([actions, objects]), a, atol=1e-6)  # the action-only spread


def test_concept_spread_layer_contract(tmp_path):
    inputs = (tf.nn.softmax(tf.random.normal((4, 3))), tf.nn.softmax(tf.random.normal((4, 4))))
    run_layer_test(_spread, inputs, tmp_path)
