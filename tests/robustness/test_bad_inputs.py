"""Every bad input of tests/robustness/catalogue.py gets its documented error; docs/robustness.md is current."""
import logging
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalogue import CASES, ROOT, markdown  # noqa: E402


@pytest.mark.parametrize("case", CASES, ids=[f"{c.area}:{c.input[:40]}" for c in CASES])
def test_bad_input(case, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    if case.raises == "exit 2":
        code, stderr = case.run(tmp_path)
        assert code == 2, stderr
        assert stderr.startswith("lumigrad: error: "), stderr
        assert "Traceback" not in stderr, stderr
        assert re.search(case.match, stderr), stderr
    elif case.raises == "parsed":
        result = case.run(tmp_path)
        case.check(result)
        assert caplog.records, "a repaired or partial read must log a warning"
    else:
        with pytest.raises(case.raises, match=case.match):
            case.run(tmp_path)


def test_catalogue_page_is_current():
    page = ROOT / "docs" / "robustness.md"
    assert page.read_text() == markdown(), "regenerate: python tests/robustness/catalogue.py > docs/robustness.md"


def test_cli_out_in_read_only_folder(tmp_path, monkeypatch, capsys):
    """`--out` in a read-only folder: exit 2 with a message, before any work (in-process: root bypasses modes)."""
    from lumigrad.cli.main import main

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root may write anywhere; make access() answer as for a normal user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == ro else real(p, mode, *a, **k))
    try:
        code = main(["demo", "--out", str(ro / "x"), "--quiet"])
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("lumigrad: error: --out ") and f"folder {ro} is not writable" in err, err
    assert not (ro / "x").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions; the in-process test covers it")
def test_cli_out_in_read_only_folder_subprocess(tmp_path):
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "lumigrad.cli.main", "demo", "--out", str(ro / "x")], env=env,
                          capture_output=True, text=True, timeout=300)
    ro.chmod(0o755)
    assert proc.returncode == 2 and proc.stderr.startswith("lumigrad: error: ") and "Traceback" not in proc.stderr
