"""`kmm export | classify | search | index`: the serving side of the command line.

Every command that runs a model takes `--model`: a local export (a version folder or the
model folder, newest version), `http://host:8501` (TF Serving REST) or `grpc://host:8500`.
"""

from pathlib import Path

from kmm import specs
from kmm.serving.vectors import KINDS

DEFAULT_BASE = specs.EXPORT_BASE
DEFAULT_NAME = specs.MODEL_NAME  # a trained run's export
PRETRAINED_NAME = "kinetics"  # `kmm export --pretrained kinetics`: real videos, no training


def _default_model():
    """The Kinetics model (real videos) when it was exported, else the trained `kmm` model."""
    pretrained = Path(DEFAULT_BASE) / PRETRAINED_NAME
    return str(pretrained if pretrained.is_dir() else Path(DEFAULT_BASE) / DEFAULT_NAME)


def _client(args):
    from kmm.serving.client import connect

    return connect(args.model, args.name, args.version, ca_cert=getattr(args, "ca_cert", None))


def _cmd_export(args):
    if (args.run_dir is None) == (args.pretrained is None):
        raise SystemExit("kmm export: give a RUN_DIR or --pretrained kinetics (not both).")
    if args.pretrained:
        path = _export_pretrained(args)
    else:
        from kmm.serving.from_run import export_run

        split = None if args.no_gallery else args.gallery_split
        path = export_run(args.run_dir, args.base_dir, args.name or DEFAULT_NAME, split, args.k, args.towers, log=print,
                          limits=_limits(args))  # fmt: skip
    print(f"TF Serving: serve {Path(args.base_dir).resolve()} (see {args.base_dir}/models.config); "
          f"try: kmm classify VIDEO --model {path.parent}")  # fmt: skip
    return 0


def _limits(args):
    from kmm.serving.preprocess import Limits

    try:
        return Limits.parse(args.limit)
    except ValueError as error:
        raise SystemExit(f"kmm export: {error}") from None


def _export_pretrained(args):
    from kmm.data.report import DataReport
    from kmm.pretrained.kinetics import export_kinetics, sample_gallery

    if args.no_gallery:
        videos = ids = captions = None
    elif args.videos:
        from kmm.serving.index import find_videos

        videos = find_videos(args.videos)
        if not videos:
            raise FileNotFoundError(f"{args.videos}: no video files found.")
        ids, captions = [str(v.relative_to(args.videos)) for v in videos], None
    else:
        videos, ids, captions = sample_gallery()
    report = DataReport()
    path = export_kinetics(args.base_dir, args.name or PRETRAINED_NAME, videos, ids, captions, args.k, report, print,
                           limits=_limits(args), segments=args.segments)  # fmt: skip
    if videos:
        print(report.summary())
        for skip in report.skipped:
            print(f"  skipped {skip.video}: {skip.detail}")
    return path


def _cmd_classify(args):
    import numpy as np

    from kmm.moments import cli as moments
    from kmm.serving.index import clip_frames, frame_request

    labels = moments.parse_labels(args.labels)
    client = _client(args)
    if args.timeline:
        return moments.classify_timeline(client, args, labels)
    if args.json or args.plot:
        raise ValueError("--json and --plot go with --timeline (labels over time).")
    num_frames, size = frame_request(client)
    frames = np.stack([clip_frames(v, num_frames, size) for v in args.videos])
    if labels:
        moments.classify_own_labels(client, args.videos, frames, labels)
    else:
        out = client.classify(frames, [args.text] * len(args.videos))
        for video, names, scores in zip(args.videos, out["labels"], out["scores"], strict=False):
            print(f"{video}" + (f"  (text: {args.text!r})" if args.text else ""))
            moments.print_bars([(label.decode(), float(score)) for label, score in zip(names, scores, strict=False)])
    if "label_segments" in (client.metadata() or {}).get("signatures", ()):
        moments.long_video_hint(args.videos)
    return 0


def _cmd_search(args):
    from kmm.moments import cli as moments

    moments.print_hits(args.queries, moments.search_hits(_client(args), args), args.json)
    return 0


def _cmd_index(args):
    from kmm.data.report import DataReport
    from kmm.serving.index import VideoIndex, find_videos

    if args.ray is not None:
        if args.whole_videos:
            raise ValueError("--ray indexes moments; --whole-videos runs in one process (leave out --ray).")
        from kmm.moments.cli import index_on_ray

        return index_on_ray(args)
    client = _client(args)
    source = Path(args.source)
    if source.is_file():
        videos, ids = [source], [source.name]
    else:
        videos = find_videos(source)
        if not videos:
            raise FileNotFoundError(f"{source}: no video files found.")
        ids = [str(v.relative_to(source)) for v in videos]
    if not args.whole_videos and "label_segments" in client.signatures():
        from kmm.moments.cli import index_moments

        return index_moments(client, args, videos, ids)
    report = DataReport()
    index = VideoIndex.build(client, videos, ids=ids, report=report, kind=args.kind, qdrant=args.qdrant)
    out = index.save(args.out)
    print(report.summary())
    for skip in report.skipped:
        print(f"  skipped {skip.video}: {skip.detail}")
    print(f"index of {len(index)} videos: {out}  (search it: kmm search 'a query' --index {out})")
    return 0


def _cmd_demo(args):
    import math
    import os
    import subprocess
    import sys

    import kmm
    from kmm.demo.media import max_upload_mb

    app = Path(kmm.__file__).resolve().parent.parent / "apps" / "demo.py"
    if not app.exists():
        raise FileNotFoundError(f"{app} not found: `kmm demo` runs from a source checkout (pip install -e .).")
    from kmm.demo.backend import VIDEOS_ENV

    env = dict(os.environ, KMM_DEMO_MODEL=args.model)
    if args.videos:
        if not Path(args.videos).is_dir():
            raise FileNotFoundError(f"--videos {args.videos}: not a folder.")
        env[VIDEOS_ENV] = str(Path(args.videos).resolve())
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.address,
               "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--client.toolbarMode", "minimal",
               "--server.maxUploadSize", str(max(1, math.ceil(max_upload_mb())))]  # fmt: skip
    print(f"kmm demo: http://{args.address}:{args.port}  (model: {args.model}; Ctrl+C stops it)", flush=True)
    return subprocess.call(command, env=env)


def add_model_arguments(parser):
    parser.add_argument("--model", default=_default_model(),
                        help="Local export folder, http(s)://host:8501 (TF Serving REST) or grpc://host:8500 (grpcs:// for TLS) "
                        "(default: saved_models/kinetics when it exists, else saved_models/kmm).")  # fmt: skip
    parser.add_argument("--name", default=DEFAULT_NAME, help="Model name on TF Serving (default: kmm).")
    parser.add_argument("--version", help="Model version (default: the newest).")
    parser.add_argument("--ca-cert", metavar="PEM",
                        help="CA certificate(s) for an https:// or grpcs:// (TLS) --model "
                        "(default: $KMM_CA_CERT, else the system's roots).")  # fmt: skip


def add_serving_commands(sub):
    export = sub.add_parser(
        "export",
        help="Export a trained run, or the pretrained Kinetics model, as a TF Serving SavedModel.",
        description="Writes saved_models/<name>/<next version>/ atomically, with the signatures serving_default, "
        "classify_jpeg, embed_video, embed_text and search (over a gallery), warmup requests, "
        "assets/kmm.json, and models.config / batching.config next to it. "
        "`--pretrained kinetics` needs no training: I3D's Kinetics-400 classes for real videos, and "
        "zero-shot text -> video search (class probabilities spread over MiniLM embeddings of the class names).",
    )
    export.add_argument("run_dir", nargs="?", help="A run folder from `kmm train` or `kmm quickstart`.")
    export.add_argument("--pretrained", choices=[PRETRAINED_NAME], help="Export a pretrained model instead of a run.")
    export.add_argument("--videos", help="With --pretrained: a folder of videos for the search gallery "
                        "(default: the real sample videos).")  # fmt: skip
    export.add_argument("--segments", action="store_true", help="With --pretrained: the gallery holds moments (2.56 s "
                        "windows inside shots; ids <video>@<start>-<end>) instead of whole videos, so `search` says "
                        "where.")  # fmt: skip
    export.add_argument(
        "--base-dir", default=DEFAULT_BASE, help="TF Serving model base folder (default: saved_models)."
    )
    export.add_argument("--name", help="Model name (default: kmm for a run, kinetics for --pretrained kinetics).")
    export.add_argument("--gallery-split", default="test", help="Split whose clips the `search` signature ranks.")
    export.add_argument("--no-gallery", action="store_true", help="No gallery, no `search` signature.")
    export.add_argument("-k", type=int, default=10, help="Results per `search` query (default: 10).")
    export.add_argument(
        "--limit", action="append", metavar="NAME=VALUE",
        help="Cap on one serving request, checked in the graph (repeatable): max_batch (64), max_frames (1024), "
             "max_frame_pixels (8294400, 4K UHD), max_aspect (4), max_pixels (134217728, batch x frames x H x W), "
             "max_text_bytes (4096). Recorded in assets/kmm.json; see SECURITY.md.",
    )  # fmt: skip
    export.add_argument("--towers", help="Also write the text and video towers as TF-Hub modules into this folder.")
    export.set_defaults(func=_cmd_export)

    classify = sub.add_parser(
        "classify",
        help="Classify videos (optionally with a text, e.g. 'the red circle'); --timeline for long videos.",
        description="Without --timeline: one label list per video, from frames spread over all of it (what the "
        "model was built for: clips of seconds). --timeline (the Kinetics model): the video is cut into shots and "
        "2.56 s windows, each labelled with Kinetics-400 actions and ImageNet-1k objects; prints label tracks with "
        "their time segments and the whole video's labels, and writes a PNG plot. --labels classifies into your "
        "own labels through the same text space, zero-shot.",
    )
    classify.add_argument("videos", nargs="+", help="Video files (mp4, avi, webm, mov, gif, ...).")
    classify.add_argument("--text", default="", help="Optional text that goes with every video.")
    classify.add_argument("--timeline", action="store_true", help="Labels over time: shots, windows, label tracks.")
    classify.add_argument("--labels", help="Your own labels, comma-separated (e.g. 'cooking,dog running,a birthday "
                          "party'): zero-shot, no training (the Kinetics model).")  # fmt: skip
    classify.add_argument("--json", action="store_true", help="With --timeline: print the timeline as JSON only.")
    classify.add_argument("--plot", help="With --timeline: where to write the PNG plot (default: "
                          "<video name>.timeline.png here; none with --json unless given).")  # fmt: skip
    classify.add_argument("--max-duration", type=float, metavar="SECONDS",
                          help="Refuse longer videos (default: 14400, 4 hours).")  # fmt: skip
    add_model_arguments(classify)
    classify.set_defaults(func=_cmd_classify)

    search = sub.add_parser(
        "search",
        help="Text -> video search over the export's gallery or a `kmm index`; hits say where (start/end).",
        description="Over a moment index (kmm index with the Kinetics model) each hit is a moment: video, start, end "
        "(seconds), score; the windows of one moment are merged into one hit.",
    )
    search.add_argument("queries", nargs="+", help="One or more text queries.")
    search.add_argument("--index", help="An index folder from `kmm index` (default: the export's own gallery).")
    search.add_argument("-k", type=int, default=5, help="Results per query (default: 5).")
    search.add_argument(
        "--json", action="store_true", help="Print JSON: per query, hits with video, start, end, score."
    )
    add_model_arguments(search)
    search.set_defaults(func=_cmd_search)

    index = sub.add_parser(
        "index",
        help="Index the moments of a video or of every video under a folder (faiss or Qdrant) for `kmm search`.",
        description="With the Kinetics model (the default when exported), every video is cut into shots and 2.56 s "
        "windows and each window is a row (video, start, end): search then returns moments. Other models, or "
        "--whole-videos, index one row per file. "
        "--kind auto searches exactly up to 200,000 rows and with an HNSW graph above; "
        "ivf and ivf-pq build faster and (ivf-pq) take d/8 bytes per video. Beyond one machine's memory, "
        "--qdrant http://host:6333 keeps the vectors in a Qdrant server or cluster. BENCHMARKS.md, "
        "'Retrieval at scale', compares their speed and recall.",
    )
    index.add_argument("source", help="A video file, or a folder searched recursively for videos.")
    index.add_argument("--whole-videos", action="store_true", help="One row per video, not per moment.")
    index.add_argument("--max-duration", type=float, metavar="SECONDS",
                       help="Skip (and list) videos longer than this (default: 14400, 4 hours).")  # fmt: skip
    index.add_argument("--out", required=True, help="Index folder to write.")
    index.add_argument("--kind", choices=KINDS, default="auto", help="faiss index (default: auto, by size).")
    index.add_argument("--qdrant", metavar="URL_OR_FOLDER", help="Keep the video vectors in Qdrant: a server "
                       "URL, or a folder for Qdrant's local mode (exact; up to about 20,000 videos).")  # fmt: skip
    ray = index.add_argument_group(
        "on a Ray cluster",
        "Decode and embed on the actors of a Ray cluster: SOURCE may also be a manifest (.csv/.jsonl), a list of "
        "paths (.txt) or a gs:// folder; every worker must reach SOURCE and --model (a shared folder or a TF "
        "Serving URL). Each video's rows are written to OUT/rows/ as it finishes, so running the same command "
        "again after a crash or Ctrl-C does only the videos left.",
    )  # fmt: skip
    ray.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="Run on Ray: the cluster at ADDRESS (ray://head:10001, auto), else $RAY_ADDRESS, "
                     "else a local cluster on this machine.")  # fmt: skip
    ray.add_argument("--workers", type=int, help="Model copies (actors); default: one per --cpus-per-worker CPUs, "
                     "or one per GPU.")  # fmt: skip
    ray.add_argument("--cpus-per-worker", type=int, default=1, help="CPUs (TensorFlow threads) per actor (default 1).")
    ray.add_argument("--retries", type=int, default=3,
                     help="Restarts of a dead worker and retries of its video (default 3).")  # fmt: skip
    add_model_arguments(index)
    index.set_defaults(func=_cmd_index)

    demo = sub.add_parser(
        "demo",
        help="Launch the Streamlit demo (classify, search, model) on an export; prints its URL.",
        description="Serves apps/demo.py with Streamlit, bound to 127.0.0.1 unless --address says otherwise. "
        "KMM_DEMO_MAX_UPLOAD_MB sets the upload limit (default 50).",
    )
    demo.add_argument("--model", default=_default_model(), help="Local export folder or a TF Serving REST URL "
                      "(default: saved_models/kinetics when it exists, else saved_models/kmm; the sidebar offers "
                      "the other exports next to it).")  # fmt: skip
    demo.add_argument("--videos", help="A folder of your own videos: the Search page indexes them and the Classify "
                      "page offers them.")  # fmt: skip
    demo.add_argument("--address", default="127.0.0.1", help="Address to bind (default: 127.0.0.1).")
    demo.add_argument("--port", type=int, default=8600, help="Port (default: 8600; TF Serving REST uses 8501).")
    demo.set_defaults(func=_cmd_demo)
