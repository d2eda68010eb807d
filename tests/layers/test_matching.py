import keras
import numpy as np

from kmm.eval.rerank import rerank
from kmm.layers import AttentionPooling, Tracks
from kmm.layers.matching import HardNegativePairs, TokenGuidedPooling, matching_loss
from tests.helpers import run_layer_test

RNG = np.random.default_rng(0)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_token_guided_pooling_equals_the_formula_and_says_where(tmp_path):
    frames, cells, dim = 3, 4, 8  # a 2x2 grid
    tokens = RNG.normal(size=(2, frames * cells, dim)).astype("float32")
    text = RNG.normal(size=(2, 5, 6)).astype("float32")
    layer = TokenGuidedPooling(frames, cells)
    out = layer(tokens, text).numpy()
    assert out.shape == (2, 5, frames, dim + 2)
    wq, bq = (w.numpy() for w in layer.query_projection.weights)
    wk, bk = (w.numpy() for w in layer.key_projection.weights)
    keys = (tokens @ wk + bk).reshape(2, frames, cells, dim)
    weights = _softmax(np.einsum("bld,btcd->bltc", text @ wq + bq, keys) / np.sqrt(dim))
    np.testing.assert_allclose(
        out[..., :dim], np.einsum("bltc,btcd->bltd", weights, tokens.reshape(keys.shape)), atol=1e-5
    )
    # Cells are row-major: (x, y) = (-1, -1), (1, -1), (-1, 1), (1, 1).
    coords = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], "float32")
    np.testing.assert_allclose(out[..., dim:], weights @ coords, atol=1e-5)

    # A token that only matches one cell per frame reports that cell's position: an object
    # moving right, frame by frame, is a track whose x goes from -1 to 1.
    sharp = TokenGuidedPooling(2, cells)
    sharp.build((None, 2 * cells, dim), (None, 1, dim))
    sharp.query_projection.set_weights([np.eye(dim, dtype="float32") * 50, np.zeros(dim, "float32")])
    sharp.key_projection.set_weights([np.eye(dim, dtype="float32"), np.zeros(dim, "float32")])
    grid = np.zeros((1, 2, cells, dim), "float32")
    grid[0, 0, 0, 0] = grid[0, 1, 1, 0] = 1.0  # top-left, then top-right
    where = sharp(grid.reshape(1, 2 * cells, dim), np.eye(dim, dtype="float32")[None, :1]).numpy()[0, 0, :, dim:]
    np.testing.assert_allclose(where, [[-1, -1], [1, -1]], atol=1e-3)
    cells_in, text_in = keras.Input((frames * cells, dim)), keras.Input((None, 6))
    model = keras.Model([cells_in, text_in], TokenGuidedPooling(frames, cells)(cells_in, text_in))
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded([tokens, text]), model([tokens, text]), atol=1e-5)


def test_tracks_and_multi_query_attention_pooling(tmp_path):
    x = RNG.normal(size=(2, 3, 4, 6)).astype("float32")
    layer = Tracks(5)
    out = layer(x).numpy()
    assert out.shape == (2, 3, 5)
    np.testing.assert_allclose(out[:, 1], layer.rnn(x[:, 1]), atol=1e-5)  # track 1 alone
    run_layer_test(lambda: Tracks(5), x, tmp_path)
    text = RNG.normal(size=(2, 7, 8)).astype("float32")
    mask = np.arange(7)[None] < np.array([[3], [7]])
    clauses = AttentionPooling(2, num_queries=3)
    out = clauses(text, padding_mask=mask).numpy()
    assert out.shape == (2, 3, 8)
    assert not np.allclose(out[:, 0], out[:, 1]), "the queries start apart"
    noisy = text.copy()
    noisy[0, 3:] = 100.0  # padding is invisible
    np.testing.assert_allclose(clauses(noisy, padding_mask=mask), out, atol=1e-5)
    run_layer_test(lambda: AttentionPooling(2, num_queries=3), text, tmp_path)


def test_hard_negative_pairs_never_pick_the_positive_and_prefer_hard_ones():
    n = 6
    similarity = np.full((n, n), 0.0, "float32")
    np.fill_diagonal(similarity, 50.0)  # the positives: never picked
    similarity[np.arange(n), (np.arange(n) + 1) % n] = 20.0  # video i's hardest caption: i + 1
    video = np.arange(n, dtype="float32")[:, None] * np.ones((1, 3), "float32")
    caption = np.arange(n, dtype="float32")[:, None]
    layer = HardNegativePairs(seed=1)
    video3, (caption3,) = layer(similarity, video, [caption])
    video3, caption3 = np.asarray(video3)[:, 0], np.asarray(caption3)[:, 0]
    assert video3.shape == caption3.shape == (3 * n,)
    np.testing.assert_array_equal(video3[:n], caption3[:n])  # positives
    np.testing.assert_array_equal(caption3[n : 2 * n], np.arange(n))  # (negative video, caption)
    np.testing.assert_array_equal(video3[n : 2 * n], (np.arange(n) - 1) % n)  # caption j's hardest video: j - 1
    np.testing.assert_array_equal(video3[2 * n :], np.arange(n))  # (video, negative caption)
    np.testing.assert_array_equal(caption3[2 * n :], (np.arange(n) + 1) % n)


def test_matching_loss_by_hand():
    logits = np.array([2.0, -1.0, 0.5, 3.0, 0.0, -2.0], "float32")  # positives (2, -1), negatives...

    def bce(z, y):
        return -(y * np.log(1 / (1 + np.exp(-z))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-z))))

    expected = [
        (bce(2.0, 1) + bce(0.5, 0) + bce(0.0, 0)) / 3,
        (bce(-1.0, 1) + bce(3.0, 0) + bce(-2.0, 0)) / 3,
    ]
    np.testing.assert_allclose(matching_loss(np.zeros(2), logits), expected, rtol=1e-5)


def test_rerank_reorders_only_the_top_k():
    similarity = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]])
    calls = []

    def scores(queries, gallery):
        calls.append((queries.tolist(), gallery.tolist()))
        return np.where(queries == 0, -gallery, gallery).astype(float)

    out = rerank(similarity, scores, k=3)
    assert calls == [([0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 2, 1])]
    # Query 0: the matcher prefers gallery 0 > 1 > 2 (already the order); query 1 prefers 3 > 2 > 1.
    assert list(np.argsort(-out[0])) == [0, 1, 2, 3]
    assert list(np.argsort(-out[1])) == [3, 2, 1, 0]
    flipped = rerank(similarity, lambda q, g: g.astype(float), k=2)
    assert list(np.argsort(-flipped[0])) == [1, 0, 2, 3]  # top-2 swapped, the rest as before
    assert keras.ops.all(keras.ops.isfinite(flipped))
