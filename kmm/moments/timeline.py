"""A label timeline of a long video: label tracks, their JSON, and a plot of labels over time.

A track is one label of one kind with the time segments where it holds, the shape of Google
Video Intelligence's shot and frame label annotations:

    {"label": "playing guitar", "kind": "action", "confidence": 0.71,
     "segments": [{"start": 12.8, "end": 20.48, "confidence": 0.74}, ...]}

A window contributes its best label of each kind, and any other of its top labels scoring at
least `min_score`, so every window is on the timeline; touching windows with the same label
merge into one segment (its confidence is the duration-weighted mean).

Example:

    >>> from kmm.moments.analyze import WindowResult
    >>> import numpy as np
    >>> w = lambda s, e, a: WindowResult(s, e, 0, [(a, 0.8)], [("teapot", 0.1)], np.zeros(2))
    >>> tracks([w(0, 2.5, "surfing water"), w(2.5, 5, "surfing water"), w(5, 7.5, "sailing")])[0]["segments"]
    [{'start': 0.0, 'end': 5.0, 'confidence': 0.8}]
"""

import numpy as np

from kmm.moments.analyze import KINDS

MIN_SCORE = 0.15  # a label below this in a window is not on the timeline
TOUCH_S = 0.05  # windows closer than this are one segment


def tracks(windows, min_score=MIN_SCORE, kinds=KINDS, extra=None):
    """Label tracks over `windows` (`WindowResult`s in time order), strongest first.

    `extra`: optional `{kind: [[(label, score)] per window]}` (e.g. the user's own labels).
    """
    found = {}  # (label, kind) -> [[start, end, score * duration, duration]]
    per_kind = {kind: [w.labels(kind) for w in windows] for kind in kinds}
    per_kind.update(extra or {})
    for kind, lists in per_kind.items():
        for window, labels in zip(windows, lists, strict=True):
            for rank, (label, score) in enumerate(labels):
                if score < min_score and rank:
                    continue
                spans = found.setdefault((label, kind), [])
                length = window.end - window.start
                if spans and window.start - spans[-1][1] <= TOUCH_S:
                    spans[-1][1] = window.end
                    spans[-1][2] += score * length
                    spans[-1][3] += length
                else:
                    spans.append([window.start, window.end, score * length, length])
    result = []
    for (label, kind), spans in found.items():
        total = sum(s[3] for s in spans)
        segments = [{"start": round(float(s[0]), 3), "end": round(float(s[1]), 3),
                     "confidence": round(float(s[2] / s[3]), 4)} for s in spans]  # fmt: skip
        confidence = sum(s[2] for s in spans) / total
        result.append({"label": label, "kind": kind, "confidence": round(float(confidence), 4),
                       "duration": round(float(total), 3), "segments": segments})  # fmt: skip
    return sorted(result, key=lambda t: -t["confidence"] * t["duration"])


def own_label_scores(client, windows, labels):
    """Per window, the user's `labels` as `[(label, probability)]` best first, from the windows'
    embeddings: the same prototypes and temperature as the export's `classify_labels`."""
    from kmm.pretrained.concepts import LABEL_TEMPERATURE
    from kmm.pretrained.kinetics import PROMPTS

    meta = client.metadata() or {}  # a TF Serving endpoint has none: the Kinetics export's own values
    prompts = meta.get("prompts") or list(PROMPTS)
    temperature = float(meta.get("label_temperature", LABEL_TEMPERATURE))
    prototypes = label_prototypes(client, labels, prompts)
    sims = np.stack([w.embedding for w in windows]) @ prototypes.T  # (windows, labels)
    probs = _softmax(sims / temperature)
    return [sorted(zip(labels, map(float, row), strict=True), key=lambda x: -x[1]) for row in probs]


def label_prototypes(client, labels, prompts):
    """`(n, D)`: each label in each prompt, embedded by `client.embed_text`, averaged, normalized."""
    embedded = [_unit(client.embed_text([p.format(label) for label in labels])) for p in prompts]
    return _unit(np.mean(embedded, axis=0))


def _unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def timeline_json(analysis, label_tracks, own_labels=None):
    """A JSON-ready dict of one video's timeline."""
    doc = {
        "video": analysis.video,
        "duration": round(analysis.duration, 3),
        "shots": [{"start": s, "end": e} for s, e in analysis.shots],
        "gaps": [{"start": s, "end": e} for s, e in analysis.gaps],
        "labels": {
            kind: [{"label": label, "confidence": round(score, 4)} for label, score in labels]
            for kind, labels in analysis.video_labels.items()
        },  # fmt: skip
        "tracks": label_tracks,
        "segments": [
            {
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "shot": w.shot,
                "actions": [[label, round(s, 4)] for label, s in w.actions],
                "objects": [[label, round(s, 4)] for label, s in w.objects],
            }  # fmt: skip
            for w in analysis.windows
        ],
        "decoder": analysis.stats,
    }
    if own_labels is not None:
        for segment, scores in zip(doc["segments"], own_labels, strict=True):
            segment["labels"] = [[label, round(s, 4)] for label, s in scores]
    return doc


KIND_COLOURS = {"action": "tab:blue", "object": "tab:orange", "label": "tab:green"}


def plot_timeline(doc, path, max_tracks=20):
    """Writes a PNG: label tracks (rows) over time, shot cuts as lines, gaps hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    shown = doc["tracks"][:max_tracks]
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.32 * max(len(shown), 1)), dpi=110)
    for row, track in enumerate(shown):
        bars = [(s["start"], s["end"] - s["start"]) for s in track["segments"]]
        alphas = [0.25 + 0.75 * min(1.0, s["confidence"]) for s in track["segments"]]
        for (x, width), alpha in zip(bars, alphas, strict=True):
            ax.broken_barh([(x, width)], (row - 0.4, 0.8), color=KIND_COLOURS.get(track["kind"], "grey"), alpha=alpha)
    for shot in doc["shots"][1:]:
        ax.axvline(shot["start"], color="black", linewidth=0.6, alpha=0.5)
    for gap in doc["gaps"]:
        ax.axvspan(gap["start"], gap["end"], facecolor="none", hatch="//", edgecolor="grey")
    ax.set_yticks(range(len(shown)), [f"{t['label']} ({t['kind'][0]})" for t in shown], fontsize=8)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlim(0, max(doc["duration"], 1e-3))
    ax.set_xlabel("seconds")
    name = doc["video"].rsplit("/", 1)[-1]
    ax.set_title(f"{name}: {len(doc['shots'])} shots, {len(doc['segments'])} windows (lines: cuts)", fontsize=9)
    kinds = sorted({t["kind"] for t in shown})
    ax.legend(handles=[Patch(color=KIND_COLOURS.get(k, "grey"), label=k) for k in kinds], fontsize=7,
              loc="lower right")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
