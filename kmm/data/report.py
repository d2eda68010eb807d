"""Accounting for skipped samples: every row read is either used or skipped with a reason."""

import collections
import csv
import dataclasses
import json
import threading
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Skip:
    row: int
    video: str
    reason: str
    detail: str


class DataReport:
    """Counts rows read, used and skipped (with file and reason), thread-safely.

    Example:

        >>> report = DataReport()
        >>> report.read(2); report.used(1); report.skip(1, "a.mp4", "missing", "no such file")
        >>> report.reconciles()
        True
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.rows_read = 0
        self.rows_used = 0
        self.skipped = []

    def read(self, n=1):
        with self._lock:
            self.rows_read += n

    def used(self, n=1):
        with self._lock:
            self.rows_used += n

    def unuse(self, n=1):
        """A row counted as used turned out bad later (e.g. a stream corrupt mid-way)."""
        with self._lock:
            self.rows_used -= n

    def skip(self, row, video, reason, detail=""):
        with self._lock:
            self.skipped.append(Skip(int(row), str(video), reason, detail))

    def reasons(self):
        return collections.Counter(s.reason for s in self.skipped)

    def reconciles(self):
        return self.rows_read == self.rows_used + len(self.skipped)

    def summary(self):
        lines = [f"rows read {self.rows_read} = used {self.rows_used} + skipped {len(self.skipped)}"]
        if not self.reconciles():
            lines[0] += "  (DOES NOT RECONCILE)"
        for reason, n in sorted(self.reasons().items()):
            lines.append(f"  skipped {n:>5}  {reason}")
        return "\n".join(lines)

    def write(self, path):
        """Writes the report as JSON (`.json`) or CSV (any other suffix); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        skips = [dataclasses.asdict(s) for s in sorted(self.skipped, key=lambda s: s.row)]
        if path.suffix == ".json":
            data = {"rows_read": self.rows_read, "rows_used": self.rows_used, "skipped": skips}
            path.write_text(json.dumps(data, indent=2) + "\n")
        else:
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["row", "video", "reason", "detail"])
                writer.writeheader()
                writer.writerows(skips)
        return path
