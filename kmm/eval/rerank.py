"""Re-ranking retrieval's top-k with the pair-matching head (the `matching` task).

The dual encoder ranks the whole gallery with one dot product per pair; the matching head
reads each (clip, caption) pair with cross-attention, so it is run only on each query's
top `k`, which it re-orders. Below the top `k` the dual encoder's order stands.
"""

import numpy as np

from kmm.specs import CAPTION_PADDING_MASK, CAPTION_TOKENS, VIDEO_CELLS, VIDEO_FEATURES


def video_cells(parts, arrays, batch_size=256):
    """The video tower's cell tokens `(n, frames * cells, dim)` for a features split."""
    out = parts.video_tower.predict(arrays[VIDEO_FEATURES], batch_size=batch_size, verbose=0)
    return np.asarray(out[VIDEO_CELLS])


def match_scores(parts, cells, arrays, video_ids, caption_ids, batch_size=500):
    """Matching logits of the pairs `(video_ids[i], caption_ids[i])` (higher: better match)."""
    scores = []
    for start in range(0, len(video_ids), batch_size):
        v, c = video_ids[start : start + batch_size], caption_ids[start : start + batch_size]
        inputs = {
            VIDEO_CELLS: cells[v],
            CAPTION_TOKENS: arrays[CAPTION_TOKENS][c],
            CAPTION_PADDING_MASK: arrays[CAPTION_PADDING_MASK][c],
        }
        scores.append(np.asarray(parts.matcher(inputs, training=False)))
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


def rerank(similarity, score_pairs, k):
    """`similarity (queries, gallery)` with each query's top `k` re-ordered by `score_pairs`.

    `score_pairs(query_ids, gallery_ids)` scores pairs. The re-ranked entries are placed
    above every other entry of their row, so `kmm.eval.metrics.ranks` reads the new order.

    Example:

    >>> rerank(np.array([[0.9, 0.8, 0.1]]), lambda q, g: g.astype(float), k=2)  # the matcher prefers 1
    array([[1.000e+03, 1.001e+03, 1.000e-01]])
    """
    similarity = np.array(similarity, dtype=np.float64)
    k = min(k, similarity.shape[1])
    top = np.argsort(-similarity, axis=1)[:, :k]  # (q, k)
    queries = np.repeat(np.arange(len(similarity)), k)
    scores = np.asarray(score_pairs(queries, top.reshape(-1)), np.float64).reshape(-1, k)
    # Keep the re-ranked block above the rest, in the matcher's order.
    order = np.argsort(np.argsort(scores, axis=1), axis=1)  # 0 = lowest score
    np.put_along_axis(similarity, top, 1000.0 + order, axis=1)
    return similarity


def reranked_retrieval(parts, arrays, video, text, ks=(1, 5, 10)):
    """`bidirectional_retrieval` with each query's top `config.rerank_top_k` re-ranked by the matcher."""
    from kmm.eval.metrics import retrieval_metrics

    cells = video_cells(parts, arrays)
    similarity = np.asarray(text) @ np.asarray(video).T  # (captions, videos)
    k = parts.config.rerank_top_k
    t2v = rerank(similarity, lambda q, g: match_scores(parts, cells, arrays, g, q), k)
    v2t = rerank(similarity.T, lambda q, g: match_scores(parts, cells, arrays, q, g), k)
    return {"text_to_video": retrieval_metrics(t2v, ks), "video_to_text": retrieval_metrics(v2t, ks), "top_k": k}
