"""Quiet output: TensorFlow's C++ log lines and third-party Python warnings, hidden unless asked.

TensorFlow 2.21 writes lines such as `I0000 00:00:... port.cc:153] oneDNN custom operations
are on ...` and `WARNING: All log messages before absl::InitializeLog() is called are written
to STDERR` straight to file descriptor 2 from C++, whatever `TF_CPP_MIN_LOG_LEVEL` says, so
they can only be removed where they are written: `quiet()` puts a small filter process
between file descriptor 2 and the terminal that drops lines with the C++ log header and
passes everything else through unchanged, as it arrives (progress bars included). Child
processes (decoder workers, the demo's Streamlit server) inherit the filter.

Python warnings from other packages are ignored and the `tensorflow` logger only reports
errors; kmm's own warnings still show. `kmm --verbose ...` or `KMM_VERBOSE=1` keeps
everything.

Example:

    >>> NATIVE_LOG_LINE.match(b"E0000 00:00:1796420157.330791   24159 util.cc:131] oneDNN supports DT_INT64 only") is not None
    True
    >>> NATIVE_LOG_LINE.match(b"[2026-12-04 21:55:48,905 E 10483 10483] core_worker.cc:2465: Actor ...") is not None
    True
    >>> NATIVE_LOG_LINE.match(b"Error: the video has no frames") is None
    True
"""

import atexit
import logging
import os
import re
import subprocess
import sys
import warnings

VERBOSE_ENV = "KMM_VERBOSE"
_FILTERED_ENV = "_KMM_STDERR_FILTERED"

# absl/TSL's header: severity, MMDD, time, thread id, file:line]; absl's first-line notice; and
# Ray's C++ header ([date time,ms severity pid tid] file:line:), which Ray's workers write alike.
NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [IWEF] \d+ \d+\] [\w.\-]+:\d+: )"
)

# The filter process: reads its stdin in chunks, drops complete lines that match
# NATIVE_LOG_LINE, writes the rest at once. A partial line is held back only while it could still
# become a TF log line (a severity letter followed by header characters), so a progress bar
# redrawn with "\r" passes through immediately. SIGINT is ignored: Ctrl-C stops kmm, whose
# exit closes the pipe, and the filter then ends after passing on the last lines.
_FILTER = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
line_re = re.compile(sys.argv[1].encode("latin-1"))
notice = b"WARNING: All log messages before absl::InitializeLog()"
header_re = re.compile(rb"[IWEF][\d :.]{0,30}|\[[\d\- :,IWEF]{0,40}")  # the start of a C++ log header

def maybe(part):  # could this partial line still become a line to drop?
    return bool(line_re.match(part) or header_re.fullmatch(part) or notice.startswith(part[: len(notice)]))

out, pending, passing = sys.stdout.buffer, b"", False
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\n")
    for line in lines:
        if passing or not line_re.match(line):
            out.write(line + b"\n")
        passing = False
    if pending and (passing or not maybe(pending)):
        out.write(pending)
        pending, passing = b"", True
    out.flush()
if pending and (passing or not line_re.match(pending)):
    out.write(pending)
out.flush()
"""

_installed = False


def is_quiet():
    """True once `quiet()` has hidden the noise in this process (so a library started later,
    e.g. Ray, can be asked to log errors only)."""
    return _installed


def verbose_requested():
    """True when `KMM_VERBOSE` is set to anything but 0 or empty (`kmm --verbose` sets it)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet():
    """Hides TensorFlow's C++ log lines and other packages' Python warnings for this process
    and its children; a no-op when `KMM_VERBOSE` asks for everything.

    Call it first thing in a program, before TensorFlow is imported. Safe to call twice.
    """
    global _installed
    if verbose_requested() or _installed:
        return
    _installed = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # what the C++ logger does honour
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"kmm(\.|$)")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if os.environ.get(_FILTERED_ENV) != "1":  # a child of a quiet kmm writes into its filter already
        os.environ[_FILTERED_ENV] = "1"
        _filter_stderr()


def _filter_stderr():
    try:
        sys.stderr.flush()
        terminal = os.dup(2)
        read_end, write_end = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER, NATIVE_LOG_LINE.pattern.decode("latin-1")],
            stdin=read_end, stdout=terminal, stderr=terminal, close_fds=True,
        )  # fmt: skip
    except OSError:  # no fds or processes left: keep the output as it is rather than fail
        return
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)

    def restore():
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(terminal, 2)  # closes this process's end of the pipe: the filter drains and exits
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a child still holds the pipe; it ends with that child
            pass

    atexit.register(restore)
