"""Metrics (seed article 9.3): accuracy, precision / recall / F1, confusion matrix, and
retrieval R@K, median and mean rank with the standard protocol.

Retrieval protocol: a similarity matrix `sim[i, j]` between query i and gallery item j,
where query i's true match is item i; the rank of the true match is 1 + the number of
items scored strictly higher (ties counted optimistically, as most benchmarks do).
"""

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes):
    """`cm[i, j]` = number of samples of class i predicted as j."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def classification_metrics(y_true, y_pred, labels):
    """Accuracy, macro precision / recall / F1 (over classes present in y_true or y_pred),
    per-class figures and the confusion matrix.

    Example:

        >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
        >>> m["accuracy"], round(m["macro_f1"], 4)
        (0.75, 0.7333)
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(0), cm.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (predicted + actual) > 0
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(labels, precision, recall, f1, actual, strict=True)
        },
        "confusion_matrix": cm.tolist(),
    }


def ranks(similarity):
    """1-based rank of the true match (the diagonal) of each query row."""
    sim = np.asarray(similarity, dtype=np.float64)
    true = np.diag(sim)[:, None]
    return (sim > true).sum(axis=1) + 1


def retrieval_metrics(similarity, ks=(1, 5, 10)):
    """R@K (percent), median and mean rank for queries = rows, gallery = columns."""
    r = ranks(similarity)
    out = {f"R@{k}": float((r <= k).mean() * 100) for k in ks}
    out.update(median_rank=float(np.median(r)), mean_rank=float(r.mean()), n=int(len(r)))
    return out


def bidirectional_retrieval(video_embeddings, text_embeddings, ks=(1, 5, 10)):
    """text->video (queries = texts) and video->text metrics from paired embeddings."""
    sim = np.asarray(text_embeddings) @ np.asarray(video_embeddings).T  # (texts, videos)
    return {"text_to_video": retrieval_metrics(sim, ks), "video_to_text": retrieval_metrics(sim.T, ks)}


def group_retrieval_metrics(similarity, groups, ks=(1, 5, 10)):
    """R@K (percent), median and mean rank where any gallery item of the query's group is a hit.

    `similarity`: `(queries, gallery)`, query `i` paired with gallery item `i`; `groups`: one
    id per pair (e.g. captions that say the same thing). With several clips per caption group
    (kmm-shapes: same colours, shapes and actions), the standard protocol cannot credit a
    model for ranking the right content first: `expected_R@1_ceiling` is the R@1 a model that
    ranks the whole group first, in random order, expects (the mean of 1 / group size).

    Example:

        >>> group_retrieval_metrics(np.eye(3)[[1, 0, 2]], [0, 0, 1], ks=(1,))["R@1"]  # rows 0, 1 hit each other
        100.0
    """
    sim = np.asarray(similarity, dtype=np.float64)
    groups = np.asarray(groups)
    same = groups[:, None] == groups[None, : sim.shape[1]]
    best = np.where(same, sim, -np.inf).max(axis=1)
    r = (np.where(same, -np.inf, sim) > best[:, None]).sum(axis=1) + 1
    out = {f"R@{k}": float((r <= k).mean() * 100) for k in ks}
    out.update(median_rank=float(np.median(r)), mean_rank=float(r.mean()), n=int(len(r)))
    out["expected_R@1_ceiling"] = float(np.mean(1.0 / same.sum(axis=1)) * 100)
    return out
