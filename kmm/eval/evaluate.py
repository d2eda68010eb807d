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
from kmm.features.arrays import caption_group_ids, embed_arrays, predict_arrays


def evaluate_split(parts, arrays):
    labels = list(parts.config.labels)
    result = {}
    probabilities, _ = predict_arrays(parts, arrays)
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


def _markdown(results):
    lines = ["| split | n | accuracy | macro F1 | action acc | referring acc | t->v R@1 | R@5 | R@10 | MdR | v->t R@1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}"

    for split, r in results.items():
        c = r.get("classification", {})
        t2v = r.get("retrieval", {}).get("text_to_video", {})
        v2t = r.get("retrieval", {}).get("video_to_text", {})
        lines.append(
            f"| {split} | {c.get('n', t2v.get('n', '-'))} | {pct(c.get('accuracy'))} | {pct(c.get('macro_f1'))} "
            f"| {pct(r.get('classification_action', {}).get('accuracy'))} "
            f"| {pct(r.get('classification_referring', {}).get('accuracy'))} "
            f"| {t2v.get('R@1', float('nan')):.1f} | {t2v.get('R@5', float('nan')):.1f} "
            f"| {t2v.get('R@10', float('nan')):.1f} | {t2v.get('median_rank', '-')} | {v2t.get('R@1', float('nan')):.1f} |"
        )
        if "retrieval_groups" in r:  # a hit is any clip whose caption says the same thing
            g = r["retrieval_groups"]["text_to_video"]
            lines.append(
                f"| {split}, any clip of the caption's group (R@1 ceiling {g['expected_R@1_ceiling']:.1f}) | {g['n']} "
                f"| - | - | - | - | {g['R@1']:.1f} | {g['R@5']:.1f} | {g['R@10']:.1f} | {g['median_rank']} | - |"
            )
    return "\n".join(lines) + "\n"


def evaluate_run(parts, split_arrays, out_dir, history_csvs=()):
    """Evaluates every split; writes `metrics.json`, `metrics.md` and plots into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {split: evaluate_split(parts, arrays) for split, arrays in split_arrays.items()}
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
