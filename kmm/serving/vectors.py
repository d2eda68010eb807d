"""Nearest-neighbour search over unit-norm embeddings (inner product = cosine): faiss in
process, or a Qdrant collection (local folder, server or cluster) for galleries that outgrow
one machine.

Which faiss index (`kind`):

| kind | what | when (`auto`) |
|---|---|---|
| `flat` | exact scan | up to `FLAT_MAX` vectors |
| `hnsw` | HNSW graph (M=32), `ef_search` trades speed for recall | above `FLAT_MAX` |
| `ivf` | inverted lists over k-means cells, `nprobe` cells scanned | by choice: builds faster than HNSW |
| `ivf-pq` | `ivf` with product-quantized vectors (`d / 8` bytes each) | by choice: when the vectors do not fit in memory |

BENCHMARKS.md ("Retrieval at scale") has the speed and recall@10 of each against the exact scan.

Example:

    >>> import numpy as np
    >>> vectors = np.eye(4, dtype=np.float32)
    >>> store = FaissVectors.build(vectors)
    >>> store.kind, len(store)
    ('flat', 4)
    >>> scores, rows = store.search(vectors[2:3], k=2)
    >>> int(rows[0, 0]), float(scores[0, 0])
    (2, 1.0)
"""

import math
import os
from pathlib import Path

import numpy as np

from kmm.paths import replacing

KINDS = ("auto", "flat", "hnsw", "ivf", "ivf-pq")
QDRANT_API_KEY_ENV = "QDRANT_API_KEY"  # a Qdrant server's API key: read from the environment only
FLAT_MAX = 200_000  # `auto`: exact below, HNSW above
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
# faiss multiplies a batch of queries by the database with BLAS (one pass over memory) only
# when queries x dim >= this; its default of 128,000 (faiss PR #5022) sends a batch of 64
# queries at d = 256 down a path that reads the whole database once per query.
BLAS_THRESHOLD = 20


def is_url(location):
    return str(location).startswith(("http://", "https://"))


def choose_kind(n):
    """The faiss index `auto` picks for `n` vectors."""
    return "flat" if n <= FLAT_MAX else "hnsw"


def ivf_cells(n):
    """k-means cells for an IVF index over `n` vectors: about 4 sqrt(n), at least 1."""
    return max(1, min(n // 39, int(4 * math.sqrt(n))))


def _unit_float32(vectors, what):
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or not len(vectors):
        raise ValueError(f"{what}: expected a non-empty (n, dim) array, got shape {vectors.shape}.")
    if not np.isfinite(vectors).all():
        raise ValueError(f"{what}: contains NaN or infinite values.")
    return vectors


class FaissVectors:
    """A faiss inner-product index: `build` it from an `(n, d)` array, `search` it, `save`/`load` it."""

    def __init__(self, index, kind):
        self.index, self.kind = index, kind

    def __len__(self):
        return self.index.ntotal

    @property
    def dim(self):
        return self.index.d

    @classmethod
    def build(cls, vectors, kind="auto", seed=0, nprobe=None, ef_search=HNSW_EF_SEARCH):
        """An index over `vectors` (rows are unit-norm embeddings).

        Args:
            kind: one of `KINDS`. Defaults to `"auto"` (`choose_kind`).
            seed: int. k-means seed and training sample of the IVF kinds.
            nprobe: int. Cells an IVF search scans. Defaults to 1/8 of the cells.
            ef_search: int. HNSW candidate list; higher is slower and more exact.
        """
        import faiss

        vectors = _unit_float32(vectors, "FaissVectors.build vectors")
        if kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, got {kind!r}.")
        n, d = vectors.shape
        kind = choose_kind(n) if kind == "auto" else kind
        metric = faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, HNSW_M, metric)
            index.hnsw.efConstruction, index.hnsw.efSearch = HNSW_EF_CONSTRUCTION, ef_search
        else:
            if kind == "ivf-pq" and d % 8:
                raise ValueError(f"ivf-pq needs a dimension divisible by 8, got {d}.")
            cells = ivf_cells(n)
            quantizer = faiss.IndexFlatIP(d)
            if kind == "ivf":
                index = faiss.IndexIVFFlat(quantizer, d, cells, metric)
            else:
                index = faiss.IndexIVFPQ(quantizer, d, cells, d // 8, 8 if n >= 256 * 39 else 4, metric)
            index.cp.seed = seed
            # k-means on a sample: 64 points per cell is plenty (faiss warns below 39).
            sample = np.random.default_rng(seed).choice(n, min(n, 64 * cells), replace=False)
            index.train(vectors[np.sort(sample)])
            index.nprobe = nprobe or max(1, cells // 8)
        index.add(vectors)
        return cls(index, kind)

    def search(self, queries, k):
        """`(scores, rows)`, each `(b, k)`, best first; rows are -1 where fewer than `k` exist."""
        import faiss

        queries = _unit_float32(queries, "search queries")
        if queries.shape[1] != self.dim:
            raise ValueError(f"search queries have dimension {queries.shape[1]}, the index {self.dim}.")
        faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
        return self.index.search(queries, k)

    def describe(self):
        return {"backend": "faiss", "kind": self.kind}

    def save(self, path):
        import faiss

        with replacing(path) as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path, kind="flat"):
        import faiss

        return cls(faiss.read_index(str(path)), kind)


class QdrantVectors:
    """A Qdrant collection as the vector store: `location` is a local folder (Qdrant's
    in-process mode: exact and meant for development, up to about 20,000 points) or the URL of a
    Qdrant server or cluster (`http://host:6333`), which runs the same calls at scale.

    Point ids are row numbers; the items (ids, videos, captions) stay in the index folder.
    """

    def __init__(self, client, location, collection):
        self.client, self.location, self.collection = client, str(location), collection

    @staticmethod
    def connect(location):
        """A `QdrantClient` for a folder (local mode) or a URL (http or https); a server's API key
        comes from `$QDRANT_API_KEY` only, so it is never on a command line, in the index
        folder or in a log."""
        from qdrant_client import QdrantClient

        if is_url(location):
            return QdrantClient(url=str(location), api_key=os.environ.get(QDRANT_API_KEY_ENV) or None)
        Path(location).mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=str(location))

    def __len__(self):
        return self.client.count(self.collection, exact=True).count

    @classmethod
    def build(cls, vectors, location, collection="kmm", batch_size=1024):
        """Writes `vectors` into `collection` at `location` (replacing a collection of that name)."""
        from qdrant_client import models

        vectors = _unit_float32(vectors, "QdrantVectors.build vectors")
        location = str(location) if is_url(location) else str(Path(location).resolve())
        client = cls.connect(location)
        if client.collection_exists(collection):
            client.delete_collection(collection)
        params = models.VectorParams(size=vectors.shape[1], distance=models.Distance.DOT)
        client.create_collection(collection, vectors_config=params)
        client.upload_collection(collection, vectors=vectors, ids=range(len(vectors)), batch_size=batch_size, wait=True)
        return cls(client, location, collection)

    def search(self, queries, k):
        """Same contract as `FaissVectors.search`."""
        from qdrant_client import models

        queries = _unit_float32(queries, "search queries")
        requests = [models.QueryRequest(query=q.tolist(), limit=k) for q in queries]
        scores = np.full((len(queries), k), -np.inf, np.float32)
        rows = np.full((len(queries), k), -1, np.int64)
        for i, answer in enumerate(self.client.query_batch_points(self.collection, requests=requests)):
            for j, point in enumerate(answer.points):
                scores[i, j], rows[i, j] = point.score, int(point.id)
        return scores, rows

    def close(self):
        self.client.close()

    def describe(self):
        return {"backend": "qdrant", "location": self.location, "collection": self.collection}

    @classmethod
    def open(cls, location, collection):
        client = cls.connect(location)
        if not client.collection_exists(collection):
            raise FileNotFoundError(f"Qdrant at {location}: no collection {collection!r}.")
        return cls(client, location, collection)
