"""Vector stores: every faiss kind and Qdrant (local mode) against the exact scan."""

import numpy as np
import pytest

from kmm.serving import vectors as V


def clustered(n, d=64, latent=8, seed=0):
    """Unit vectors near a `latent`-dimensional subspace: neighbours that mean something, as
    in real embeddings (uniform random vectors in high dimension have none)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((latent, d)).astype(np.float32)
    x = rng.standard_normal((n, latent)).astype(np.float32) @ basis + 0.3 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    x = clustered(6000)
    rng = np.random.default_rng(2)  # queries: database vectors plus noise
    queries = x[rng.choice(len(x), 200, replace=False)] + 0.2 * rng.standard_normal((200, x.shape[1])).astype(
        np.float32
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    return x, queries, exact


def recall_at_10(rows, exact):
    return np.mean([len(set(r) & set(e)) / 10 for r, e in zip(rows, exact, strict=True)])


@pytest.mark.parametrize(("kind", "minimum"), [("flat", 1.0), ("hnsw", 0.95), ("ivf", 0.9), ("ivf-pq", 0.35)])
def test_each_kind_finds_the_exact_neighbours_and_survives_a_round_trip(kind, minimum, data, tmp_path):
    # ivf-pq keeps 8 bytes of 4-bit codes per vector here (64 dims): its minimum is low, but
    # 2,000 times what 10 random rows would score.
    x, queries, exact = data
    store = V.FaissVectors.build(x, kind)
    scores, rows = store.search(queries, 10)
    assert store.kind == kind and len(store) == len(x) and rows.shape == scores.shape == (200, 10)
    assert recall_at_10(rows, exact) >= minimum
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    store.save(tmp_path / "index.faiss")
    loaded = V.FaissVectors.load(tmp_path / "index.faiss", kind)
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], rows)  # nprobe / efSearch kept


def test_flat_scores_are_the_inner_products_with_blas_for_batches(data):
    x, queries, exact = data
    import faiss

    faiss.cvar.distance_compute_blas_threshold = 128_000  # faiss 1.15's default
    scores, rows = V.FaissVectors.build(x, "flat").search(queries[:64], 10)
    assert faiss.cvar.distance_compute_blas_threshold == V.BLAS_THRESHOLD
    np.testing.assert_array_equal(rows, exact[:64])
    np.testing.assert_allclose(scores, np.take_along_axis(queries[:64] @ x.T, rows, axis=1), atol=1e-5)


def test_auto_is_exact_up_to_flat_max_then_hnsw():
    assert V.choose_kind(V.FLAT_MAX) == "flat" and V.choose_kind(V.FLAT_MAX + 1) == "hnsw"
    assert V.FaissVectors.build(clustered(50)).kind == "flat"


def test_fewer_items_than_k_pad_with_minus_one():
    scores, rows = V.FaissVectors.build(clustered(3)).search(clustered(1), 5)
    assert (rows[0, 3:] == -1).all() and sorted(rows[0, :3]) == [0, 1, 2]


def test_bad_input_is_named():
    x = clustered(20)
    with pytest.raises(ValueError, match="index kind must be one of"):
        V.FaissVectors.build(x, "annoy")
    with pytest.raises(ValueError, match="NaN or infinite"):
        V.FaissVectors.build(np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match=r"non-empty \(n, dim\)"):
        V.FaissVectors.build(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="dimension 8, the index 64"):
        V.FaissVectors.build(x).search(np.ones((1, 8)), 1)


def test_qdrant_local_mode_answers_like_the_exact_scan(data, tmp_path):
    x, queries, exact = data
    store = V.QdrantVectors.build(x[:1000], tmp_path / "qdrant", collection="clips")
    scores, rows = store.search(queries[:20], 10)
    truth = np.argsort(-(queries[:20] @ x[:1000].T), axis=1)[:, :10]
    np.testing.assert_array_equal(rows, truth)
    np.testing.assert_allclose(scores, np.take_along_axis(queries[:20] @ x[:1000].T, rows, axis=1), atol=1e-5)
    assert store.describe() == {"backend": "qdrant", "location": str(tmp_path / "qdrant"), "collection": "clips"}
    store.close()
    reopened = V.QdrantVectors.open(tmp_path / "qdrant", "clips")
    assert len(reopened) == 1000
    np.testing.assert_array_equal(reopened.search(queries[:20], 10)[1], rows)
    reopened.close()
    with pytest.raises(FileNotFoundError, match="no collection 'other'"):
        V.QdrantVectors.open(tmp_path / "qdrant", "other")


def test_a_qdrant_servers_api_key_comes_from_the_environment_and_is_written_nowhere(data, tmp_path, monkeypatch):
    import qdrant_client

    from kmm.serving.index import VideoIndex

    x = data[0][:50]
    opened, real = [], qdrant_client.QdrantClient
    # Stands in for a secured server: records how it was reached, answers from memory.
    monkeypatch.setattr(qdrant_client, "QdrantClient", lambda **kw: opened.append(kw) or real(location=":memory:"))
    secret = "s3cret-qdrant-key-0123456789"
    monkeypatch.setenv("QDRANT_API_KEY", secret)
    store = V.QdrantVectors.build(x, "https://qdrant.example.com:6333", collection="clips")
    assert opened == [{"url": "https://qdrant.example.com:6333", "api_key": secret}]
    np.testing.assert_array_equal(store.search(x[:3], 1)[1][:, 0], [0, 1, 2])
    ids = [f"clip{i}" for i in range(len(x))]
    VideoIndex(store, ids, ids, [""] * len(x), {"vectors": store.describe()}).save(tmp_path / "index")
    written = list((tmp_path / "index").rglob("*"))
    assert written and not [p for p in written if p.is_file() and secret.encode() in p.read_bytes()]
    monkeypatch.delenv("QDRANT_API_KEY")
    V.QdrantVectors.connect("http://localhost:6333")
    assert opened[-1] == {"url": "http://localhost:6333", "api_key": None}
