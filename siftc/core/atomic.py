"""Writes that never leave a half-written file: whole files by rename, whole folders by an atomic
exchange of names (``write_dir``), JSON lines by one append.

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


# ------------------------------------------------------------------ whole folders
# A folder artefact (a checkpoint: weights + JSON bound by a SHA-256; a dump folder; an ONNX model
# and its external data) is written into a sibling temp folder and swapped in by one atomic
# exchange of the two names (Linux renameat2 RENAME_EXCHANGE), so a kill at any instant leaves the
# old folder or the new one at ``path``, never a mix and never nothing. The exchanged-out old
# folder and a killed writer's temp folder carry the writer's pid and are removed by the next write.
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Atomically swap the paths ``a`` and ``b`` (both exist); False where the system cannot."""
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def remove_orphan_dirs(path: Path) -> int:
    """Remove the temp and old folders of ``path`` that a dead writer left (their names carry its
    pid); a live writer's are left alone. An old folder whose swap a kill interrupted where no
    atomic exchange exists (``path`` itself missing) is put back first."""
    import shutil
    removed = 0
    for tmp in sorted(path.parent.glob(f".{path.name}.*.dir")):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if tmp.name.endswith(".old.dir") and not path.exists():
            os.replace(tmp, path)
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed += 1
    return removed


def begin_dir(path) -> Path:
    """A new empty temp folder beside ``path`` to fill; ``commit_dir`` swaps it in, ``abandon_dir``
    removes it. Temp and old folders of ``path`` that dead writers left are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_dirs(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.dir"
    tmp.mkdir()
    return tmp


def commit_dir(tmp: Path, path, carry=None) -> Path:
    """Swap the filled folder ``tmp`` in place of ``path`` (one atomic exchange where the system
    has it). ``carry(name)``: entries of the old folder to keep in the new one (hard-linked, or
    copied across file systems): files the artefact does not own, such as a user's."""
    import shutil
    path = Path(path)
    os.chmod(tmp, 0o777 & ~_umask())
    if path.is_dir() and carry is not None:
        for entry in os.listdir(path):
            src, dst = path / entry, tmp / entry
            if carry(entry) and not dst.exists():
                if src.is_dir():
                    shutil.copytree(src, dst)
                else:
                    try:
                        os.link(src, dst)
                    except OSError:
                        shutil.copy2(src, dst)
    if not path.exists():
        os.rename(tmp, path)
    elif _exchange(str(tmp), str(path)):
        shutil.rmtree(tmp, ignore_errors=True)       # the old folder, under the temp name now
    else:                              # no atomic exchange here: two renames, repaired by the next write
        old = path.parent / f".{path.name}.{os.getpid()}.old.dir"
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    return path


def abandon_dir(tmp: Path) -> None:
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


def write_dir(path, write, replaceable=None) -> Path:
    """Call ``write(temp_folder)`` on a new folder beside ``path``, then swap it in place of ``path``.

    ``replaceable(existing_folder)`` says why an existing ``path`` must not be replaced (a folder
    holding files this artefact does not own), or '' to replace it; a file at ``path`` is refused.
    Refusals raise FileExistsError before anything is written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file, not a folder")
    if path.is_dir() and replaceable is not None:
        why = replaceable(path)
        if why:
            raise FileExistsError(f"{path}: {why}")
    tmp = begin_dir(path)
    try:
        write(tmp)
        commit_dir(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            abandon_dir(tmp)
    return path
