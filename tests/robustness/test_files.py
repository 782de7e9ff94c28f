"""Atomic writes: output permissions follow the umask, stale temporaries are cleaned, live ones kept."""
import os
import stat
import subprocess
import sys
import time

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

from lumigrad._runtime.files import STALE_SECONDS, atomic_path, clean_stale_temporaries, write_text_atomic


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_file_mode_follows_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_text_atomic(tmp_path / "a.txt", "hi")
        plain = tmp_path / "plain.txt"
        with open(plain, "w") as f:
            f.write("hi")
    finally:
        os.umask(old)
    got = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert got == 0o666 & ~mask == stat.S_IMODE(plain.stat().st_mode)


def test_replaced_file_keeps_its_mode(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    p.chmod(0o640)
    write_text_atomic(p, "new")
    assert p.read_text() == "new" and stat.S_IMODE(p.stat().st_mode) == 0o640


def test_temporary_is_private_while_written(tmp_path):
    with atomic_path(tmp_path / "c.pt") as tmp:
        assert tmp.name.startswith(f".c.tmp-{os.getpid()}-") and tmp.suffix == ".pt"
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
        torch.save({"a": 1}, tmp)
    assert [q.name for q in tmp_path.iterdir()] == ["c.pt"]


def test_stale_temporaries_cleaned_on_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale_dead = tmp_path / f".fit.tmp-{dead_pid}-abc123.pt"  # its writer is gone
    live = tmp_path / f".fit.tmp-{os.getppid()}-def456.pt"  # a live process's in-flight write
    legacy_old = tmp_path / ".fit.k2j4h5g6.pt"  # old-style name, untouched for 2 hours
    legacy_new = tmp_path / ".fit.a1b2c3d4.pt"  # old-style name, fresh: may be in flight
    other = tmp_path / f".other.tmp-{dead_pid}-aaa.pt"  # another target's temporary
    for q in (stale_dead, live, legacy_old, legacy_new, other):
        q.write_bytes(b"partial")
    two_hours_ago = time.time() - 2 * STALE_SECONDS
    os.utime(legacy_old, (two_hours_ago, two_hours_ago))
    with atomic_path(tmp_path / "fit.pt") as tmp:
        torch.save({"x": 1}, tmp)
    left = sorted(q.name for q in tmp_path.iterdir())
    assert left == sorted(["fit.pt", live.name, legacy_new.name, other.name])
    # A live writer's temporary goes too once it is older than STALE_SECONDS (PIDs get reused).
    os.utime(live, (two_hours_ago, two_hours_ago))
    assert clean_stale_temporaries(tmp_path / "fit.pt") == [live]


def test_interrupted_write_leaves_no_temporary(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "x.pt"):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_checks_and_files_do_not_import_warp():
    code = ("import sys, lumigrad._runtime.checks, lumigrad._runtime.files, lumigrad._runtime; "
            "assert 'warp' not in sys.modules, 'warp imported'; print('ok')")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
