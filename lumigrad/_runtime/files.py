"""Atomic file output: a crash or Ctrl-C never leaves a half-written file behind.

A write goes to a private temporary beside the target, named
``.<stem>.tmp-<pid>-<random><suffix>``, which is renamed over the target once
complete. The finished file gets the permissions a plain ``open(path, "w")``
would give it: the existing file's mode when it is replaced, else ``0o666`` minus
the umask (the temporary itself is ``0o600`` while it is written). Temporaries
left by an interrupted write (a killed process) are removed by the next write
to the same target: those whose process is gone, and any older than
:data:`STALE_SECONDS`. No Warp or torch import here.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["atomic_path", "write_text_atomic", "existing_file", "clean_stale_temporaries", "STALE_SECONDS"]

_log = logging.getLogger(__name__)

# A temporary untouched for this long is stale even if its PID is alive (PIDs are reused).
STALE_SECONDS = 3600.0
_umask_lock = threading.Lock()


def _umask() -> int:
    """The process umask, without changing it where /proc tells (else a locked set-and-restore)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)  # replacing: keep the file's mode, as open() does
    except OSError:
        return 0o666 & ~_umask()


def _temp_pattern(path: Path) -> re.Pattern:
    stem, suffix = re.escape(path.stem), re.escape(path.suffix)
    # New names carry the writer's PID; old ones (mkstemp's 8 random characters) do not.
    return re.compile(rf"\.{stem}\.(?:tmp-(?P<pid>\d+)-[A-Za-z0-9_]+|[A-Za-z0-9_]{{8}}){suffix}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or cannot tell): keep its file
    return True


def clean_stale_temporaries(path: str | os.PathLike, *, now: float | None = None) -> list[Path]:
    """Remove temporaries of interrupted atomic writes to ``path``; return what was removed.

    A temporary is stale when the PID in its name is not running (on this
    machine), or, for any of them, when it was last modified more than
    :data:`STALE_SECONDS` ago. Another live process's in-flight write is kept.
    """
    path = Path(path)
    pattern = _temp_pattern(path)
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        pid = m.group("pid")
        if age > STALE_SECONDS or (pid is not None and not _pid_alive(int(pid))):
            with contextlib.suppress(OSError):
                os.remove(entry.path)
                removed.append(Path(entry.path))
    if removed:
        _log.info("removed %d stale temporaries of %s", len(removed), path)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The temporary keeps ``path``'s suffix so writers that pick a format from the
    extension (imageio, trimesh, matplotlib) still work. The result has the
    permissions ``open()`` would give (see the module docstring).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-{os.getpid()}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def existing_file(fn: str, path) -> Path:
    """``Path(path)`` if it names an existing file; else an error naming ``fn`` and the path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}(): path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{fn}(): no such file: {p}")
    return p
