"""Retrieval at scale: exact scans against the memory-bandwidth floor, and approximate indexes
against the exact scan, side by side on the same vectors in one run.

Data: seeded synthetic unit vectors near a 24-dimensional subspace plus noise (real
embeddings have such structure; uniform random vectors in 256 dimensions have no meaningful
neighbours, and every ANN index does badly on them). Queries come from the same generator.

Per method: build time, index memory, ms per query at batch 1 and at batch 64, and recall@10
against the exact top 10. The floor is the time to read the database once at the copy
bandwidth measured in this run (STREAM convention: a copy moves 2 x its bytes).

Methods: numpy (`q @ x.T` + argpartition); the exported `search` signature's ops (a
`tf.function` matmul + `top_k` over a gallery variable); faiss flat with faiss's default BLAS
threshold and with kmm's (`kmm.serving.vectors.BLAS_THRESHOLD`); IVF at several nprobe; HNSW
at several efSearch; IVF-PQ; Qdrant's local mode (only up to `--qdrant-max`: it keeps points in
Python and scans them exactly).

Run: .venv/bin/python benchmarks/retrieval.py --sizes 100000 1000000 --dims 256 128
"""

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from kmm.serving import vectors as V

K = 10


def embeddings(n, d, seed, latent=24, noise=0.3, basis_seed=1234):
    basis = np.random.default_rng([basis_seed, d]).standard_normal((latent, d)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), np.float32)
    for start in range(0, n, 100_000):  # in chunks: the float64 noise of 1M x 256 would be 2 GB
        m = min(100_000, n - start)
        x = rng.standard_normal((m, latent), dtype=np.float32) @ basis
        x += noise * rng.standard_normal((m, d), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def copy_bandwidth(x):
    """Bytes per second moved by `np.copyto` (read + write), best of 3."""
    target = np.empty_like(x)
    best = min(_seconds(lambda: np.copyto(target, x)) for _ in range(3))
    return 2 * x.nbytes / best


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ms_per_query(search, queries, batch, repeats):
    """Median ms per query of `search(queries[i:i+batch])` over `repeats` batches."""
    search(queries[:batch])  # warm up (tracing, first touch)
    times = [_seconds(lambda i=i: search(queries[i * batch : (i + 1) * batch])) for i in range(repeats)]
    return statistics.median(times) * 1000 / batch


def recall(rows, exact):
    return float(np.mean([len(set(r[r >= 0]) & set(e)) / K for r, e in zip(rows, exact, strict=True)]))


def numpy_search(x):
    def search(q):
        scores = q @ x.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return None, np.take_along_axis(top, order, axis=1)

    return search


def graph_search(x):
    import tensorflow as tf

    gallery = tf.Variable(x, trainable=False)

    @tf.function(input_signature=[tf.TensorSpec([None, x.shape[1]], tf.float32)])
    def search(q):  # the `search` signature's ops (kmm.serving.export), less the text tower
        return tf.math.top_k(tf.matmul(q, gallery, transpose_b=True), K)

    def run(q):
        scores, rows = search(q)
        return scores.numpy(), rows.numpy()

    return run


def faiss_flat(store, threshold):
    import faiss

    def search(q):
        faiss.cvar.distance_compute_blas_threshold = threshold
        return store.index.search(q, K)

    return search


def index_bytes(store):
    import faiss

    return int(faiss.serialize_index(store.index).size)


def run_size(n, d, args):
    print(f"\n== {n:,} x {d} ==", flush=True)
    x = embeddings(n, d, seed=0)
    queries = embeddings(max(args.queries, 64 * args.repeats + 64), d, seed=1)
    bandwidth = copy_bandwidth(x)
    floor_ms = x.nbytes / bandwidth * 1000
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s; one pass over {x.nbytes / 1e6:.0f} MB: {floor_ms:.1f} ms")
    flat = V.FaissVectors.build(x, "flat")
    _, exact = faiss_flat(flat, V.BLAS_THRESHOLD)(queries[: args.queries])
    rows = []

    def measure(name, search, build_s, memory, setting=""):
        _, found = search(queries[: args.queries])
        row = {
            "n": n, "d": d, "method": name, "setting": setting, "build_s": round(build_s, 1),
            "memory_mb": round(memory / 1e6, 1),
            "ms_per_query_b1": round(ms_per_query(search, queries, 1, args.repeats * 4), 3),
            "ms_per_query_b64": round(ms_per_query(search, queries, 64, args.repeats), 3),
            "recall_at_10": round(recall(found, exact), 3),
        }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)

    measure("numpy", numpy_search(x), 0, x.nbytes)
    measure("in-graph search", graph_search(x), 0, x.nbytes)
    measure("faiss flat", faiss_flat(flat, 128_000), 0, x.nbytes, "faiss default BLAS threshold")
    measure("faiss flat", faiss_flat(flat, V.BLAS_THRESHOLD), 0, x.nbytes, f"threshold {V.BLAS_THRESHOLD} (kmm)")
    del flat
    for kind, knob, values in (("ivf", "nprobe", args.nprobe), ("ivf-pq", "nprobe", args.nprobe[-2:]),
                               ("hnsw", "efSearch", args.ef_search)):  # fmt: skip
        start = time.perf_counter()
        store = V.FaissVectors.build(x, kind)
        build_s = time.perf_counter() - start
        for value in values:
            if kind == "hnsw":
                store.index.hnsw.efSearch = value
            else:
                store.index.nprobe = value
            cells = f" of {store.index.nlist} cells" if kind != "hnsw" else ""
            measure(
                f"faiss {kind}",
                lambda q, s=store: s.search(q, K),
                build_s,
                index_bytes(store),
                f"{knob} {value}{cells}",
            )
        del store
    if n <= args.qdrant_max:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            store = V.QdrantVectors.build(x, Path(folder) / "qdrant")
            build_s = time.perf_counter() - start
            size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
            measure("qdrant local", lambda q: store.search(q, K), build_s, size, "exact, in-process")
            store.close()
    else:
        print(f"qdrant local: skipped above {args.qdrant_max:,} vectors (local mode keeps points in Python)")
    return {"n": n, "d": d, "copy_gb_per_s": round(bandwidth / 1e9, 2), "floor_ms": round(floor_ms, 2), "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[256])
    parser.add_argument("--queries", type=int, default=256, help="Queries for recall@10.")
    parser.add_argument("--repeats", type=int, default=5, help="Batches timed per batch size (x4 at batch 1).")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--qdrant-max", type=int, default=100_000)
    parser.add_argument("--out", default="benchmarks/results/retrieval.json")
    args = parser.parse_args()
    results = [run_size(n, d, args) for d in args.dims for n in args.sizes]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    record = {"command": "benchmarks/retrieval.py " + " ".join(f"{k}={v}" for k, v in vars(args).items()),
              "peak_rss_gb": round(peak, 2), "results": results}  # fmt: skip
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"peak RSS {peak:.1f} GB -> {args.out}")


if __name__ == "__main__":
    main()
