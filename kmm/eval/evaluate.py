"""`kmm evaluate`: classification and retrieval metrics per split, as JSON, Markdown and PNGs.

Classification is reported overall and per sample kind: `action` (empty text: plain
action recognition) and `referring` (text names one object, e.g. "the red circle").
Retrieval ranks every caption of a split against every clip of the split (text->video)
and back (video->text).
"""

import json
from pathlib import Path

import numpy as np

from kmm import specs
from kmm.eval import metrics, plots
from kmm.features.arrays import caption_group_ids, embed_arrays, feature_model, predict_arrays


def evaluate_split(parts, arrays, model=None):
    """Classification and retrieval metrics of one split (`model`: `feature_model(parts, ...)`,
    shared by the splits of one evaluation so its predict function is traced once)."""
    labels = list(parts.config.labels)
    result = {}
    probabilities, _ = predict_arrays(parts, arrays, model=model)
    if probabilities is not None:
        y_true, y_pred = arrays[specs.LABEL_ID], probabilities.argmax(1)
        known = y_true >= 0
        empty = np.array([t == b"" for t in arrays[specs.TEXT]])
        result["classification"] = metrics.classification_metrics(y_true[known], y_pred[known], labels)
        for kind, select in (("action", empty), ("referring", ~empty)):
            select = select & known
            if select.any():
                m = metrics.classification_metrics(y_true[select], y_pred[select], labels)
                result[f"classification_{kind}"] = {k: m[k] for k in ("n", "accuracy", "macro_f1")}
    if parts.text_tower is not None:
        video, text = embed_arrays(parts, arrays)
        result["retrieval"] = metrics.bidirectional_retrieval(video, text)
        groups = caption_group_ids(arrays)[0]
        if len(np.unique(groups)) < len(groups):  # captions that say the same thing: report both protocols
            result["retrieval_groups"] = {"text_to_video": metrics.group_retrieval_metrics(text @ video.T, groups)}
    return result


def _pct(x):
    return None if x is None else f"{100 * x:.1f}"


def _num(x):
    return None if x is None else f"{x:.1f}"


# (header, value of one split's results or None): a column shows when some split has a value.
_COLUMNS = (
    ("n", lambda r: r.get("classification", {}).get("n", r.get("retrieval", {}).get("text_to_video", {}).get("n"))),
    ("accuracy", lambda r: _pct(r.get("classification", {}).get("accuracy"))),
    ("macro F1", lambda r: _pct(r.get("classification", {}).get("macro_f1"))),
    ("action acc", lambda r: _pct(r.get("classification_action", {}).get("accuracy"))),
    ("referring acc", lambda r: _pct(r.get("classification_referring", {}).get("accuracy"))),
    ("t->v R@1", lambda r: _num(r.get("retrieval", {}).get("text_to_video", {}).get("R@1"))),
    ("R@5", lambda r: _num(r.get("retrieval", {}).get("text_to_video", {}).get("R@5"))),
    ("R@10", lambda r: _num(r.get("retrieval", {}).get("text_to_video", {}).get("R@10"))),
    ("MdR", lambda r: r.get("retrieval", {}).get("text_to_video", {}).get("median_rank")),
    ("v->t R@1", lambda r: _num(r.get("retrieval", {}).get("video_to_text", {}).get("R@1"))),
)


def _markdown(results):
    """The metrics as a Markdown table with the columns this run has ("-" where a split lacks one)."""
    rows = {split: [get(r) for _, get in _COLUMNS] for split, r in results.items()}
    for split, r in results.items():
        if "retrieval_groups" in r:  # a hit is any clip whose caption says the same thing
            g = r["retrieval_groups"]["text_to_video"]
            label = f"{split}, any clip of the caption's group (R@1 ceiling {g['expected_R@1_ceiling']:.1f})"
            group = {"n": g["n"], "t->v R@1": _num(g["R@1"]), "R@5": _num(g["R@5"]), "R@10": _num(g["R@10"]),
                     "MdR": g["median_rank"]}  # fmt: skip
            rows[label] = [group.get(name) for name, _ in _COLUMNS]
    keep = [i for i in range(len(_COLUMNS)) if any(values[i] is not None for values in rows.values())]
    lines = ["| split | " + " | ".join(_COLUMNS[i][0] for i in keep) + " |", "|---" * (len(keep) + 1) + "|"]
    for split, values in rows.items():
        lines.append(f"| {split} | " + " | ".join("-" if values[i] is None else str(values[i]) for i in keep) + " |")
    return "\n".join(lines) + "\n"


def evaluate_run(parts, split_arrays, out_dir, history_csvs=()):
    """Evaluates every split; writes `metrics.json`, `metrics.md` and plots into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = feature_model(parts, next(iter(split_arrays.values()))) if parts.head is not None and split_arrays else None
    results = {split: evaluate_split(parts, arrays, model) for split, arrays in split_arrays.items()}
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "metrics.md").write_text(_markdown(results))
    for split, r in results.items():
        if "classification" in r:
            plots.plot_confusion(
                r["classification"]["confusion_matrix"], list(parts.config.labels),
                out_dir / f"confusion_{split}.png", f"{split}: accuracy {100 * r['classification']['accuracy']:.1f}%",
            )  # fmt: skip
    plots.plot_recall({s: r["retrieval"] for s, r in results.items() if "retrieval" in r}, out_dir / "recall.png")
    plots.plot_history(history_csvs, out_dir / "training_curves.png")
    return results


def results_table(results):
    return _markdown(results)
