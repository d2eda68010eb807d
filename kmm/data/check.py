"""`kmm data check`: decode every row the way training would, and account for each one."""

from pathlib import Path

from tqdm.auto import tqdm

from kmm.data import sampling
from kmm.data.config import DataConfig
from kmm.data.decoder import probe_rows, read_frames
from kmm.data.manifest import read_manifest
from kmm.data.report import DataReport
from kmm.data.video_io import VideoDecodeError


def check_manifest(path, config=DataConfig(), label_names=None, strict=False, progress=True):
    """Reads, probes and decodes every row of a manifest; returns the `DataReport`.

    Example:

        >>> report = check_manifest("manifest.csv")  # doctest: +SKIP
        >>> print(report.summary())  # doctest: +SKIP
        rows read 4 = used 3 + skipped 1
          skipped     1  missing
    """
    report = DataReport()
    rows = read_manifest(path, report, label_names=label_names, strict=strict, video_root=config.video_root)
    usable = probe_rows(rows, report, strict=strict)
    for row, info in tqdm(usable, desc=f"check {Path(path).name}", unit="clip", disable=not progress):
        try:
            idx = sampling.uniform(info.num_frames, config.num_frames)
            read_frames(info.path, idx, config.frame_size, config.resize, info=info)
            report.used()
        except VideoDecodeError as e:
            if strict:
                raise
            report.skip(row.index, row.video, e.reason, e.detail)
    return report
