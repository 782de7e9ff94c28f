"""The README's Python example runs as written (from the repository root)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_runs(monkeypatch):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    grad = scope["verts"].grad
    assert grad is not None and grad.shape == scope["mesh"].verts.shape
    assert grad.abs().sum() > 0


def test_readme_starts_with_setup_commands():
    head = (ROOT / "README.md").read_text().split("\n## ")[0]
    assert "make demo" in head and "make test" in head
