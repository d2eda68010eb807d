"""The long-video side of `kmm classify --timeline`, `kmm classify --labels`, `kmm index` and
`kmm search --json` (argument parsing stays in `kmm.cli_serving`)."""

import json
import sys
from pathlib import Path

from kmm.data.segments import SegmentConfig

LONG_VIDEO_S = 30.0  # `kmm classify` suggests --timeline above this


def segment_config(args):
    """The `SegmentConfig` a command's `--max-duration` asks for."""
    if getattr(args, "max_duration", None):
        return SegmentConfig(max_duration_s=float(args.max_duration))
    return SegmentConfig()


def parse_labels(text):
    """`"cooking, dog running,,a birthday party"` -> `["cooking", "dog running", "a birthday party"]`."""
    if text is None:
        return None
    labels = [t.strip() for t in text.split(",") if t.strip()]
    if not labels:
        raise ValueError(f"--labels {text!r}: give at least one label, comma-separated (e.g. 'cooking,dog running').")
    if len(set(labels)) != len(labels):
        raise ValueError(f"--labels {text!r}: a label is given twice.")
    return labels


def print_bars(rows, width=30):
    for label, score in rows:
        print(f"  {score:6.3f}  {'#' * int(round(score * width)):<{width}}  {label}")


def classify_own_labels(client, videos, frames, labels):
    """`kmm classify --labels`: the clips' probabilities over the user's labels (zero-shot)."""
    out = client.classify_labels(frames, labels)
    for video, probs in zip(videos, out["probabilities"], strict=True):
        print(f"{video}  (your labels)")
        print_bars(sorted(zip(labels, map(float, probs), strict=True), key=lambda x: -x[1]))


def long_video_hint(videos):
    from kmm.data.decoder import probe
    from kmm.data.shot_stream import duration_s

    for video in videos:
        seconds = duration_s(probe(video))
        if seconds > LONG_VIDEO_S:
            print(f"note: {video} is {seconds:.0f} s long; these labels come from frames spread over all of it. "
                  f"Labels per moment: kmm classify {video} --timeline")  # fmt: skip


def classify_timeline(client, args, labels):
    """`kmm classify VIDEO --timeline`: shots, label tracks, whole-video labels, a PNG plot, or JSON."""
    from kmm.moments.analyze import analyze_video
    from kmm.moments.timeline import own_label_scores, plot_timeline, timeline_json, tracks

    docs = []
    for video in args.videos:
        analysis = analyze_video(client, video, segment_config(args), progress=not args.json)
        own = own_label_scores(client, analysis.windows, labels) if labels else None
        label_tracks = tracks(analysis.windows, extra={"label": [o[:1] for o in own]} if own else None)
        doc = timeline_json(analysis, label_tracks, own)
        plot = args.plot if args.plot else (None if args.json else f"{Path(video).stem}.timeline.png")
        if plot:
            if len(args.videos) > 1 and args.plot:
                plot = str(Path(args.plot).with_name(f"{Path(video).stem}.{Path(args.plot).name}"))
            doc["plot"] = str(plot_timeline(doc, plot))
        docs.append(doc)
        if not args.json:
            _print_timeline(doc)
    if args.json:
        json.dump(docs[0] if len(docs) == 1 else docs, sys.stdout, indent=1)
        print()
    return 0


def _print_timeline(doc, tracks_shown=15):
    print(f"{doc['video']}: {doc['duration']:.1f} s, {len(doc['shots'])} shots, {len(doc['segments'])} windows")
    for kind, labels in doc["labels"].items():
        print(f"  whole video, {kind}s:")
        print_bars([(x["label"], x["confidence"]) for x in labels[:5]])
    for gap in doc["gaps"]:
        print(f"  no frames from {gap['start']:.2f} s to {gap['end']:.2f} s (the timestamps jump)")
    if "stopped_at" in doc["decoder"]:
        print(f"  decoding stopped at {doc['decoder']['stopped_at']:.2f} s: the rest of the file does not decode")
    print(f"  timeline ({min(tracks_shown, len(doc['tracks']))} of {len(doc['tracks'])} tracks; --json for all):")
    for track in doc["tracks"][:tracks_shown]:
        spans = ", ".join(f"{s['start']:.1f}-{s['end']:.1f}" for s in track["segments"][:6])
        more = f" (+{len(track['segments']) - 6})" if len(track["segments"]) > 6 else ""
        print(f"    {track['confidence']:5.2f}  {track['kind']:<6}  {track['label']:<28} {spans}{more}")
    if "plot" in doc:
        print(f"  plot: {doc['plot']}")


def search_hits(client, args):
    """Per query, hits `{video, start, end, score, ...}`: from a moment index, a whole-video
    index, or the export's own gallery (whose ids may be moments)."""
    from kmm.moments.index import merge_moments, parse_moment_id, search_moments

    if args.index:
        from kmm.serving.index import VideoIndex

        index = VideoIndex.load(args.index)
        queries = client.embed_text(args.queries)
        if index.has_moments:
            return search_moments(index, queries, args.k)
        return [[_whole(video, score, item=item, caption=caption) for item, score, video, caption in hits]
                for hits in index.search(queries, args.k)]  # fmt: skip
    from kmm.serving.export import read_gallery

    found = client.search(args.queries)
    gallery = read_gallery(client.path) if hasattr(client, "path") else None
    captions = dict(zip(gallery["ids"], gallery["captions"], strict=False)) if gallery else {}
    results = []
    for ids, scores in zip(found["ids"], found["scores"], strict=True):
        ids = [i.decode() for i in ids]
        parsed = [parse_moment_id(i) for i in ids]
        if all(start is not None for _, start, _ in parsed):
            hits = [(video, start, end, None, float(s)) for (video, start, end), s in zip(parsed, scores, strict=True)]
            results.append(merge_moments(hits, args.k))
        else:
            results.append([_whole(i, float(s), caption=captions.get(i, "")) for i, s in zip(ids, scores, strict=True)]
                           [: args.k])  # fmt: skip
    return results


def _whole(video, score, item=None, caption=""):
    """A whole-video hit: it starts at 0 and ends where the file does (None when not readable here)."""
    from kmm.data.decoder import probe
    from kmm.data.shot_stream import duration_s
    from kmm.data.video_io import VideoDecodeError

    try:
        end = round(duration_s(probe(video)), 3)
    except (VideoDecodeError, OSError):
        end = None
    hit = {"video": video, "start": 0.0, "end": end, "score": float(score)}
    if item is not None and item != video:
        hit["id"] = item
    if caption:
        hit["caption"] = caption
    return hit


def print_hits(queries, results, as_json):
    if as_json:
        json.dump([{"query": q, "hits": hits} for q, hits in zip(queries, results, strict=True)], sys.stdout, indent=1)
        print()
        return
    for query, hits in zip(queries, results, strict=True):
        print(f"query: {query!r}")
        for rank, hit in enumerate(hits, 1):
            where = (
                ""
                if hit.get("end") is None and not hit.get("start")
                else f"  {_clock(hit['start'])}-{_clock(hit['end'])}"
            )
            extra = f"  [{', '.join(hit['labels'])}]" if hit.get("labels") else ""
            caption = f"  -- {hit['caption']}" if hit.get("caption") else ""
            print(f"  {rank:>2}. {hit['score']:6.3f}  {hit.get('id', hit['video'])}{where}{extra}{caption}")


def _clock(seconds):
    if seconds is None:
        return "end"
    minutes, rest = divmod(float(seconds), 60)
    return f"{int(minutes)}:{rest:05.2f}"


def index_moments(client, args, videos, ids):
    """`kmm index` with a model that labels segments: one row per window of every video."""
    from kmm.data.report import DataReport
    from kmm.moments.index import build_moment_index

    report = DataReport()
    index = build_moment_index(client, videos, ids, segment_config(args), report, kind=args.kind, qdrant=args.qdrant)
    out = index.save(args.out)
    return _print_index(index, report, out)


def index_on_ray(args):
    """`kmm index SOURCE --out DIR --ray [ADDRESS]`: the same moments, from the actors of a Ray cluster."""
    from kmm.moments.corpus import CorpusConfig, index_corpus

    config = CorpusConfig(address=args.ray or None, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                          retries=args.retries)  # fmt: skip
    index, result = index_corpus(args.source, args.out, args.model, args.name, segment_config(args), config,
                                 kind=args.kind, qdrant=args.qdrant)  # fmt: skip
    print(result.summary())
    return _print_index(index, result.report, Path(args.out))


def _print_index(index, report, out):
    print(report.summary())
    for skip in report.skipped:
        print(f"  skipped {skip.video}: {skip.reason}: {skip.detail}")
    for video, stopped in index.info["partial"].items():
        print(f"  partial {video}: decoding stopped at {stopped:.2f} s; the windows before it are indexed")
    for video, gaps in index.info["gaps"].items():
        print(f"  gaps in {video}: " + ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in gaps) + " (no frames there)")
    videos_kept = len(set(index.videos))
    print(f"index of {len(index)} moments in {videos_kept} videos: {out}  "
          f"(search it: kmm search 'a query' --index {out} [--json])")  # fmt: skip
    return 0
