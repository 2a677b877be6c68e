"""Keeping native libraries' log lines off a program's terminal, without touching other threads' output.

MediaPipe's C++ core (absl/glog, LiteRT) writes INFO and WARNING lines straight to file descriptor 2
on start, on every detection and on close, whatever glog's environment flags say (measured: the same
15 lines with GLOG_minloglevel 0 or 3). Redirecting fd 2 around those calls is not safe in a program
with threads: another thread's output is lost meanwhile, and two overlapping redirections can leave
stderr pointing at /dev/null for good.

`native_logs_filtered` is meant for a program's entry point (the CLI's `main`), once, for the whole
run: fd 2 becomes a pipe whose reader thread drops the native log lines and passes everything else on,
and Python's own `sys.stderr` writes to the real stderr directly (no delay, nothing filtered).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# absl/glog ("W0000 00:00:1796198189.093 13763 file.cc:181] ..."), LiteRT/TFLite ("INFO: ..."), and absl's
# notice that it logs before InitGoogle.
NATIVE_LOG_LINE = re.compile(rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.+-]+:\d+\] |INFO: |"
                             rb"WARNING: Logging before InitGoogle\(\))")  # fmt: skip


def _pump(read_fd: int, write_fd: int) -> None:
    """Copy lines from `read_fd` to `write_fd` until EOF, leaving out native log lines."""
    pending = b""
    with os.fdopen(read_fd, "rb", buffering=0) as source:
        while chunk := source.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not NATIVE_LOG_LINE.match(line))
            if kept:
                os.write(write_fd, kept)
    if pending and not NATIVE_LOG_LINE.match(pending):
        os.write(write_fd, pending)


@contextmanager
def native_logs_filtered(enabled: bool = True) -> Iterator[None]:
    """For a program's whole run: native log lines written to fd 2 are dropped, everything else reaches
    stderr. Python's `sys.stderr` is pointed at the real stderr for the duration. Child processes inherit
    the filtered fd 2. No-op when not `enabled` (e.g. ``--verbose``) or when fd 2 is not open."""
    try:
        real = os.dup(2)
    except OSError:
        enabled, real = False, -1
    if not enabled:
        if real >= 0:
            os.close(real)
        yield
        return
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(target=_pump, args=(read_fd, real), name="sie3d-native-logs", daemon=True)
    pump.start()
    python_stderr = sys.stderr
    sys.stderr = open(os.dup(real), "w", buffering=1, encoding=python_stderr.encoding,  # noqa: SIM115
                      errors="backslashreplace")  # fmt: skip
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(real, 2)  # closes the pipe's last write end in this process: the pump sees EOF
        pump.join(timeout=2.0)  # children that still hold the pipe only delay their own lines
        if not pump.is_alive():
            os.close(real)  # else the pump still writes there until those children exit
