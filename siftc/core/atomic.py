"""Writes that never leave a half-written file: whole files by rename, JSON lines by one append.

Every file siftc writes (dumps, the HTML viewer, experiment summaries, result lines) goes through
here. A whole file is written to a temp file in the same folder, given the usual permissions (the
umask's, not mkstemp's 0600) and renamed over the target, so a crash or a full disk leaves the
previous file as it was and no temp file behind (the temp file is removed on every exit path
Python sees; one left by a killed process, whose pid its name carries, is removed by the next
write of the same file). A JSON line is appended with a single ``write`` on an O_APPEND descriptor, and
``read_json_lines`` skips a last line cut short by a kill (with a warning) instead of failing.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # another user's process: alive
        return True
    return True


def remove_orphans(path: Path) -> int:
    """Remove temp files of ``path`` left by a writer that was killed (SIGKILL, power loss: no
    exit path ran). Temp names carry the writer's pid; a live writer's file is left alone."""
    removed = 0
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def write_with(path, write) -> Path:
    """Call ``write(temp_path)`` on a temp file beside ``path``, give it the umask's permissions
    and rename it over ``path``; the temp file is removed if anything fails, and temp files of
    ``path`` that a killed writer left are removed first."""
    path = Path(path)
    remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())       # mkstemp makes it 0600: others must be able to read it
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_bytes(path, data: bytes) -> Path:
    return write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def append_json_line(path, record: dict) -> None:
    data = (json.dumps(record) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_json_lines(path) -> list:
    text = Path(path).read_text() if Path(path).exists() else ""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:          # no newline after it: a write cut short by a kill
                warnings.warn(f"{path}: skipping an incomplete last line (a run killed while writing it)",
                              stacklevel=2)
                continue
            raise
    return out
