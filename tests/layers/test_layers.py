import keras
import numpy as np
import pytest

from kmm.layers import (
    AttentionPooling,
    ConcatFusion,
    CrossModalAttention,
    CrossModalFusion,
    L2Normalize,
    PositionEmbedding,
    RecurrentTemporal,
    SimilarityLogits,
    TemporalPooling,
    TemporalTransformer,
    TransformerBlock,
)
from kmm.layers.retrieval import infonce_loss
from tests.helpers import run_layer_test

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 6, 8)).astype("float32")
TEXT = RNG.normal(size=(3, 5, 8)).astype("float32")


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numpy_multi_head_attention(mha, query, value, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V per head, then the output projection (seed article 4.1)."""
    wq, bq, wk, bk, wv, bv, wo, bo = (w.numpy() for w in mha.weights)
    q = np.einsum("btd,dhk->bhtk", query, wq) + bq[None, :, None, :]
    k = np.einsum("bsd,dhk->bhsk", value, wk) + bk[None, :, None, :]
    v = np.einsum("bsd,dhk->bhsk", value, wv) + bv[None, :, None, :]
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask[:, None], scores, -1e9)
    weights = _softmax(scores)
    heads = weights @ v  # (b, h, t, k)
    return np.einsum("bhtk,hkd->btd", heads, wo) + bo, weights


def test_cross_modal_attention_equals_the_formula():
    layer = CrossModalAttention(num_heads=2, dropout=0.0)
    mask = np.ones((3, 5), bool)
    mask[1, 3:] = False
    out, scores = layer(X, TEXT, context_mask=mask, return_attention_scores=True)
    expected, weights = numpy_multi_head_attention(layer.attention, X, TEXT, mask[:, None, :])
    np.testing.assert_allclose(scores, weights, atol=1e-5)
    np.testing.assert_allclose(layer.attention(X, TEXT, attention_mask=mask[:, None, :]), expected, atol=1e-4)
    assert np.allclose(scores[1, :, :, 3:], 0), "padded text tokens get no attention"
    assert out.shape == X.shape


def test_padding_equals_no_padding():
    """A padded clip with its mask gives the same outputs as the unpadded clip."""
    padded = np.concatenate([X, RNG.normal(size=(3, 2, 8)).astype("float32") * 100], axis=1)
    mask = np.concatenate([np.ones((3, 6), bool), np.zeros((3, 2), bool)], axis=1)
    for layer in (TemporalPooling("mean"), TemporalPooling("max"), AttentionPooling(2)):
        np.testing.assert_allclose(
            layer(padded, padding_mask=mask), layer(X, padding_mask=np.ones((3, 6), bool)), atol=1e-5
        )
    block = TransformerBlock(2, dropout=0.0)
    full = block(padded, padding_mask=mask)
    np.testing.assert_allclose(full[:, :6], block(X), atol=1e-5)
    rnn = RecurrentTemporal("gru", 4)
    np.testing.assert_allclose(rnn(padded, padding_mask=mask)[:, :6], rnn(X), atol=1e-5)
    fusion = CrossModalAttention(2, dropout=0.0)
    pad_text = np.concatenate([TEXT, np.full((3, 3, 8), 50.0, "float32")], axis=1)
    text_mask = np.concatenate([np.ones((3, 5), bool), np.zeros((3, 3), bool)], axis=1)
    np.testing.assert_allclose(fusion(X, pad_text, context_mask=text_mask), fusion(X, TEXT), atol=1e-5)


def test_mean_pooling_is_order_blind_and_the_transformer_is_not():
    reversed_x = X[:, ::-1]
    np.testing.assert_allclose(TemporalPooling("mean")(X), TemporalPooling("mean")(reversed_x), atol=1e-6)
    layer = TemporalTransformer(1, 2, dropout=0.0)
    pool = AttentionPooling(2)
    assert not np.allclose(pool(layer(X)), pool(layer(reversed_x)), atol=1e-4)


def test_similarity_and_infonce():
    v = L2Normalize()(RNG.normal(size=(4, 8)).astype("float32"))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-6)
    sim = SimilarityLogits(initial_temperature=0.5)
    logits = sim(v, v)
    np.testing.assert_allclose(logits, 2.0 * (v.numpy() @ v.numpy().T), atol=1e-5)
    loss = infonce_loss(None, logits).numpy()
    log_softmax = logits.numpy() - np.log(np.exp(logits.numpy()).sum(1, keepdims=True))
    expected = -np.diag(log_softmax)  # symmetric matrix: both directions equal
    np.testing.assert_allclose(loss, expected, atol=1e-5)
    np.testing.assert_allclose(infonce_loss(np.arange(4.0) + 7, logits), expected, atol=1e-5)  # distinct groups


def test_infonce_does_not_use_same_group_clips_as_negatives():
    logits = RNG.normal(size=(4, 4)).astype("float32") * 3
    groups = np.array([5.0, 1.0, 5.0, 2.0])  # clips 0 and 2: captions that say the same thing
    keep = (groups[:, None] != groups[None, :]) | np.eye(4, dtype=bool)

    def masked_cross_entropy(m):
        m = np.where(keep, m, -np.inf)
        return -(np.diag(m) - np.log(np.exp(m).sum(1)))

    expected = (masked_cross_entropy(logits) + masked_cross_entropy(logits.T)) / 2
    loss = infonce_loss(groups, logits).numpy()
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert not np.allclose(loss, infonce_loss(None, logits).numpy())


@pytest.mark.parametrize(
    "make, inputs",
    [
        (lambda: TemporalPooling("max"), X),
        (lambda: PositionEmbedding(16), X),
        (lambda: TransformerBlock(2), X),
        (lambda: TemporalTransformer(2, 2), X),
        (lambda: RecurrentTemporal("lstm", 8), X),
        (lambda: AttentionPooling(2), X),
    ],
    ids=["pooling", "position", "block", "transformer", "lstm", "attention_pooling"],
)
def test_layer_contract(make, inputs, tmp_path):
    run_layer_test(make, inputs, tmp_path)


def test_two_input_layers_round_trip(tmp_path):
    video, text = keras.Input((6, 8)), keras.Input((5, 8))
    text_mask = keras.Input((5,), dtype="bool")
    fused_v, fused_t = CrossModalFusion(2, 2, co_attention=True, name="fusion")(video, text, text_mask=text_mask)
    concat = ConcatFusion(8, name="concat")(keras.layers.GlobalAveragePooling1D()(fused_v), fused_t[:, 0])
    model = keras.Model([video, text, text_mask], keras.layers.Dense(2)(concat))
    inputs = [X, TEXT, np.ones((3, 5), bool)]
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras")(inputs), model(inputs), atol=1e-5)
    config = model.get_layer("fusion").get_config()
    assert config["co_attention"] and config["num_layers"] == 2


def test_bad_options():
    with pytest.raises(ValueError, match="mode must be one of"):
        TemporalPooling("median")
    with pytest.raises(ValueError, match="kind must be one of"):
        RecurrentTemporal("rnn")


def test_text_guided_pooling_equals_the_formula(tmp_path):
    from kmm.layers import TextGuidedPooling

    frames, cells, dim = 3, 4, 8
    tokens = RNG.normal(size=(2, frames * cells, dim)).astype("float32")
    query = RNG.normal(size=(2, 5)).astype("float32")
    layer = TextGuidedPooling(frames, cells)
    out, weights = layer(tokens, query, return_attention_scores=True)
    wq, bq = (w.numpy() for w in layer.query_projection.weights)
    wk, bk = (w.numpy() for w in layer.key_projection.weights)
    keys = (tokens @ wk + bk).reshape(2, frames, cells, dim)
    q = query @ wq + bq
    expected_w = _softmax(np.einsum("btcd,bd->btc", keys, q) / np.sqrt(dim))
    np.testing.assert_allclose(weights, expected_w, atol=1e-5)
    expected = np.einsum("btc,btcd->btd", expected_w, tokens.reshape(2, frames, cells, dim))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    cells_in, query_in = keras.Input((frames * cells, dim)), keras.Input((5,))
    model = keras.Model([cells_in, query_in], TextGuidedPooling(frames, cells, name="guided")(cells_in, query_in))
    model.save(tmp_path / "g.keras")
    np.testing.assert_allclose(
        keras.models.load_model(tmp_path / "g.keras")([tokens, query]), model([tokens, query]), atol=1e-5
    )


def test_slot_pooling_equals_the_formula_and_round_trips(tmp_path):
    from kmm.layers import SlotPooling

    frames, cells, slots, dim = 3, 4, 2, 8
    tokens = RNG.normal(size=(2, frames * cells, dim)).astype("float32")
    layer = SlotPooling(frames, cells, slots)
    out, weights = layer(tokens, return_attention_scores=True)
    wk, bk = (w.numpy() for w in layer.key_projection.weights)
    keys = (tokens @ wk + bk).reshape(2, frames, cells, dim)
    expected_w = _softmax(np.einsum("btcd,kd->btkc", keys, layer.queries.numpy()) / np.sqrt(dim))
    np.testing.assert_allclose(weights, expected_w, atol=1e-5)
    expected = np.einsum("btkc,btcd->btkd", expected_w, tokens.reshape(2, frames, cells, dim))
    np.testing.assert_allclose(out, expected.reshape(2, frames * slots, dim), atol=1e-5)  # frame-major
    # Slots are content queries: moving an object to another cell moves the slot's attention with it.
    grid = tokens.reshape(2, frames, cells, dim)
    rolled = np.roll(grid, 1, axis=2).reshape(2, frames * cells, dim)
    _, rolled_weights = layer(rolled, return_attention_scores=True)
    np.testing.assert_allclose(np.roll(weights, 1, axis=-1), rolled_weights, atol=1e-5)
    run_layer_test(lambda: SlotPooling(frames, cells, slots), tokens, tmp_path)


CENTRES_2X2 = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])  # row-major (x, y)


def test_attended_position_is_the_weighted_cell_centre():
    from kmm.layers.grid import attended_position

    weights = _softmax(RNG.normal(size=(3, 5, 4))).astype("float32")
    np.testing.assert_allclose(attended_position(weights, 4), weights @ CENTRES_2X2, atol=1e-6)
    np.testing.assert_allclose(attended_position(np.full((1, 9), 1 / 9, "float32"), 9), [[0.0, 0.0]], atol=1e-6)
    # The radius: the weighted standard deviation of the cell centres.
    mean = weights @ CENTRES_2X2
    radius = np.sqrt(weights @ (CENTRES_2X2**2).sum(1) - (mean**2).sum(-1))
    np.testing.assert_allclose(attended_position(weights, 4, spread=True), np.dstack([mean, radius]), atol=1e-3)
    assert float(attended_position(np.eye(4, dtype="float32")[:1], 4, spread=True)[0, 2]) < 0.01  # one cell
    with pytest.raises(ValueError, match="square grid"):
        attended_position(weights, 6)


def test_positions_follow_the_attention_in_both_cell_poolings(tmp_path):
    from kmm.layers import SlotPooling, TextGuidedPooling

    frames, cells, dim = 3, 4, 8
    tokens = RNG.normal(size=(2, frames * cells, dim)).astype("float32")
    query = RNG.normal(size=(2, 5)).astype("float32")
    plain = TextGuidedPooling(frames, cells)
    plain_out = plain(tokens, query)
    guided = TextGuidedPooling(frames, cells, positions=True)
    guided(tokens, query)
    guided.set_weights(plain.get_weights())
    out, weights = guided(tokens, query, return_attention_scores=True)
    assert out.shape == (2, frames, dim + 2)
    np.testing.assert_allclose(out[..., :dim], plain_out, atol=1e-5)
    np.testing.assert_allclose(out[..., dim:], np.asarray(weights) @ CENTRES_2X2, atol=1e-5)
    run_layer_test(lambda: SlotPooling(frames, cells, 2, positions=True), tokens, tmp_path)
    # One bright object moving one cell right per frame: a slot that finds it reports x going up.
    moving = np.zeros((1, frames, cells, dim), "float32")
    for t, cell in enumerate((0, 1, 1)):
        moving[0, t, cell] = 10.0
    slots = SlotPooling(frames, cells, 1, positions=True)
    slots.build((None, frames * cells, dim))
    slots.queries.assign(np.ones((1, dim), "float32"))
    slots.key_projection.set_weights([np.eye(dim, dtype="float32"), np.zeros(dim, "float32")])
    where = np.asarray(slots(moving.reshape(1, frames * cells, dim)))[0, :, dim:]  # (frames, [x, y, radius])
    np.testing.assert_allclose(where[:, 0], [-1.0, 1.0, 1.0], atol=1e-3)
    np.testing.assert_allclose(where[:, 1:], [[-1.0, 0.0]] * frames, atol=1e-2)


def test_slot_tracks_run_one_rnn_per_slot(tmp_path):
    from kmm.layers import SlotTracks

    frames, slots = 3, 2
    x = RNG.normal(size=(2, frames * slots, 8)).astype("float32")
    layer = SlotTracks(frames, slots, 4)
    out = layer(x).numpy()
    assert out.shape == (2, slots, 4)
    # Slot 1's track is the LSTM over frames (0, 1, 2) of slot 1 alone.
    track = x.reshape(2, frames, slots, 8)[:, :, 1]
    np.testing.assert_allclose(out[:, 1], layer.rnn(track), atol=1e-5)
    run_layer_test(lambda: SlotTracks(frames, slots, 4), x, tmp_path)
