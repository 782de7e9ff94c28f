"""The default test run needs nothing beside the checkout (issue 13, item 0)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_DATA, shared_data_dir, shared_file

ROOT = Path(__file__).resolve().parents[2]


def test_lookup_without_env_points_beside_the_checkout(tmp_path):
    tests_dir = tmp_path / "clone" / "tests"
    got = shared_data_dir(environ={}, tests_dir=tests_dir)
    assert got == tmp_path / "shared" / "data"
    assert not got.exists()
    assert shared_data_dir(environ={"LUMIGRAD_TEST_DATA": str(tmp_path / "x")}, tests_dir=tests_dir) == tmp_path / "x"


def test_shared_file_skips_with_a_reason_when_absent(monkeypatch, tmp_path):
    import conftest

    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "nothing-here")
    with pytest.raises(pytest.skip.Exception, match="suzanne/suzanne.obj not found .* LUMIGRAD_TEST_DATA"):
        shared_file("suzanne/suzanne.obj")


def test_carried_data_present():
    assert (TEST_DATA / "open_shell.obj").stat().st_size > 1000


def test_default_run_in_a_bare_clone(tmp_path):
    """Copy the package and tests to tmp_path (nothing beside it) and run the data-reading tests there."""
    clone = tmp_path / "clone"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("lumigrad", "tests"):
        shutil.copytree(ROOT / name, clone / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", clone / "pyproject.toml")
    env = {k: v for k, v in os.environ.items() if k != "LUMIGRAD_TEST_DATA"}
    env["PYTHONPATH"] = str(clone)
    files = ["tests/ops/test_antialias.py", "tests/scene/test_io.py"]
    select = "topology_matches or spot or mtl_texture or lego"  # every test of these files that reads data
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-m", "", "-rs", "-k", select, *files],
        cwd=clone, env=env, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert " passed" in out
    # The shared-data tests (selected with -m "") skipped, each saying why.
    assert "1 passed" in out and "3 skipped" in out and out.count("not found under") == 3, out[-3000:]
