"""Manifests: one row per sample (`video`, optional `caption`, `label`, `text`, `split`).

CSV (with a header) and JSONL are read and written. Relative video paths are relative to
the manifest's folder. Importers turn two common layouts into manifests:
`from_class_folders` (UCF101 style `root/<class>/<clip>`) and `from_msrvtt` (an MSR-VTT
style JSON with `videos` and `sentences`).
"""

import csv
import dataclasses
import json
from pathlib import Path

from kmm import specs
from kmm.data.report import DataReport
from kmm.data.video_io import VIDEO_EXTENSIONS

MAX_CAPTION_CHARS = 2000


@dataclasses.dataclass(frozen=True)
class Row:
    """One manifest row; `index` is its 0-based position among the data rows of the file."""

    index: int
    video: str
    caption: str = ""
    label: str = ""
    text: str = ""
    split: str = ""


class ManifestError(ValueError):
    """The manifest file itself is unusable (unreadable, wrong format, no `video` column)."""


def _decode(value, row, column, path):
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="surrogateescape")
    value = "" if value is None else str(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None, f"{column} is not valid UTF-8"
    return value.strip(), None


def _raw_records(path):
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: no such manifest")
    suffix = path.suffix.lower()
    # utf-8-sig: a byte-order mark (Excel's CSV export) is not part of the first column's name.
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        if suffix == ".csv":
            reader = csv.DictReader(f)
            try:
                if not reader.fieldnames or specs.VIDEO not in reader.fieldnames:
                    found = ", ".join(repr(c) for c in reader.fieldnames or [])
                    raise ManifestError(
                        f"{path}: a CSV manifest needs a header with a '{specs.VIDEO}' column; found {found or 'none'}"
                    )
                yield from reader
            except csv.Error as e:  # e.g. a cell over csv.field_size_limit() characters
                raise ManifestError(f"{path}: line {reader.line_num + 1}: not readable as CSV: {e}") from None
        elif suffix in (".jsonl", ".ndjson"):
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    yield {"__error__": f"line {n} is not JSON: {e.msg}"}
                    continue
                yield record if isinstance(record, dict) else {"__error__": f"line {n} is not a JSON object"}
        else:
            raise ManifestError(f"{path}: unknown manifest format {suffix!r}; use .csv or .jsonl")


def read_manifest(path, report=None, label_names=None, strict=False, require=(), video_root=None):
    """Reads and validates a manifest; bad rows are skipped and recorded in `report`.

    Row checks: missing `video`, non-UTF-8 or overlong (> 2000 chars) text fields, empty
    `require`d fields (e.g. `caption` for retrieval training), a label outside
    `label_names` (when given), a video outside `video_root` (`outside_root`), and exact
    duplicate rows.

    Args:
        path: str or Path. A `.csv` or `.jsonl` manifest.
        report: `DataReport` or None. Receives read / skip counts.
        label_names: list of str or None. Allowed labels; others are `unknown_label`.
        strict: bool. Raise on the first bad row instead of skipping it.
        require: iterable of column names that must be non-empty (e.g. `("caption",)`).
        video_root: str, Path or None. Every video must be inside this folder once `..` and
            symbolic links are resolved, so a manifest from elsewhere cannot make kmm read
            (and the demo show) other files of this machine. Defaults to the manifest's own
            folder; `"/"` allows any path.

    Returns:
        list of `Row` with absolute video paths.
    """
    path = Path(path)
    report = report if report is not None else DataReport()
    base = path.parent.resolve()
    root = Path(video_root).expanduser().resolve() if video_root is not None else base
    allowed = set(label_names) if label_names is not None else None
    rows, seen = [], set()
    for index, record in enumerate(_raw_records(path)):
        report.read()
        problem, fields = None, {}
        if "__error__" in record:
            problem = ("bad_record", record["__error__"])
        for column in specs.MANIFEST_COLUMNS:
            if problem:
                break
            value, error = _decode(record.get(column), index, column, path)
            if error:
                problem = (f"{column}_not_utf8", error)
            elif column != specs.VIDEO and len(value) > MAX_CAPTION_CHARS:
                problem = (f"{column}_too_long", f"{len(value)} characters > {MAX_CAPTION_CHARS}")
            fields[column] = value
        video = fields.get(specs.VIDEO, "")
        if not problem and not video:
            problem = ("missing_video_path", "empty 'video' field")
        for column in require:
            if not problem and not fields.get(column):
                problem = (f"empty_{column}", f"'{column}' is empty but required")
        if not problem and allowed is not None and fields[specs.LABEL] and fields[specs.LABEL] not in allowed:
            problem = ("unknown_label", f"label {fields[specs.LABEL]!r} is not one of the {len(allowed)} known labels")
        if not problem:
            video_path = Path(video) if Path(video).is_absolute() else base / video
            fields[specs.VIDEO] = str(video_path)
            if not video_path.resolve().is_relative_to(root):
                problem = ("outside_root", f"resolves to {video_path.resolve()}, outside the video root {root}")
            key = tuple(fields[c] for c in specs.MANIFEST_COLUMNS)
            if key in seen:
                problem = ("duplicate_row", "identical to an earlier row")
            seen.add(key)
        if problem:
            if strict:
                hint = " (set the video root to a folder that holds it)" if problem[0] == "outside_root" else ""
                raise ManifestError(f"{path}: row {index}: {problem[0]}: {problem[1]}{hint}")
            report.skip(index, video, *problem)
            continue
        rows.append(Row(index=index, **fields))
    return rows


def write_manifest(rows, path):
    """Writes rows (`Row`s or dicts) to `.csv` or `.jsonl`, video paths relative to the manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    records = []
    for row in rows:
        record = dataclasses.asdict(row) if isinstance(row, Row) else dict(row)
        record.pop("index", None)
        video = Path(record[specs.VIDEO])
        if video.is_absolute() and video.resolve().is_relative_to(base):
            record[specs.VIDEO] = str(video.resolve().relative_to(base))
        records.append({c: record.get(c, "") or "" for c in specs.MANIFEST_COLUMNS})
    if path.suffix.lower() == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(specs.MANIFEST_COLUMNS))
            writer.writeheader()
            writer.writerows(records)
    else:
        with open(path, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def from_class_folders(root, split=""):
    """UCF101-style `root/<class>/<clip>.<ext>` -> rows labelled by folder name."""
    root = Path(root)
    rows = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for clip in sorted(class_dir.rglob("*")):
            if clip.suffix.lower() in VIDEO_EXTENSIONS:
                rows.append(Row(index=len(rows), video=str(clip.resolve()), label=class_dir.name, split=split))
    if not rows:
        raise ManifestError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in class folders")
    return rows


def from_msrvtt(json_path, video_dir, ext=".mp4"):
    """MSR-VTT style JSON (`videos`: `video_id`, `split`; `sentences`: `video_id`, `caption`)
    -> one row per sentence."""
    data = json.loads(Path(json_path).read_text())
    if "videos" not in data or "sentences" not in data:
        raise ManifestError(f"{json_path}: expected the keys 'videos' and 'sentences'")
    splits = {v["video_id"]: v.get("split", "") for v in data["videos"]}
    rows = []
    for s in data["sentences"]:
        vid = s["video_id"]
        video = Path(video_dir).resolve() / f"{vid}{ext}"
        split = {"validate": "val"}.get(splits.get(vid, ""), splits.get(vid, ""))
        rows.append(Row(index=len(rows), video=str(video), caption=s["caption"], split=split))
    return rows


def assign_splits(rows, val=0.15, test=0.15, seed=0):
    """Gives rows without a split one of train / val / test; rows with a split keep it.

    Stratified by label (each label's clips are shuffled with `seed`, then cut by the
    fractions, at least one val and one test clip per label that has three or more), and
    every row of a video goes to the same split, so no clip is in two splits.
    """
    import numpy as np

    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val ({val}) and test ({test}) must be fractions in [0, 1) that sum below 1.")
    videos = {}
    for row in rows:
        if not row.split:
            videos.setdefault(row.label, {}).setdefault(row.video, None)
    chosen = {}
    rng = np.random.default_rng(seed)
    for label in sorted(videos):
        group = list(videos[label])
        order = [group[i] for i in rng.permutation(len(group))]
        n_val, n_test = round(len(order) * val), round(len(order) * test)
        if len(order) >= 3:
            n_val, n_test = max(n_val, 1 if val else 0), max(n_test, 1 if test else 0)
        for i, video in enumerate(order):
            chosen.setdefault(video, "val" if i < n_val else "test" if i < n_val + n_test else "train")
    return [row if row.split else dataclasses.replace(row, split=chosen[row.video]) for row in rows]
