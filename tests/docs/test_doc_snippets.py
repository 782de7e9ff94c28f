"""The Python code blocks on the prose pages run, in order, and do what the text says."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[2] / "docs"
REPO = DOCS.parent


def python_blocks(page: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(), flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", ["index.md", "getting-started.md", "concepts/gradients.md"])
def test_page_code_runs(page, tmp_path, monkeypatch):
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python code blocks"
    # Paths in the snippets are relative to the repository root; outputs go to a temporary folder.
    code = "\n".join(blocks).replace('"lumigrad/assets/', f'"{REPO}/lumigrad/assets/')
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_snippet"}
    exec(compile(code, f"docs/{page}", "exec"), namespace)
    if page == "getting-started.md":
        assert namespace["out"].image.shape == (2, 64, 64, 3)
        assert (tmp_path / "spot.png").is_file()
        assert namespace["verts"].grad.abs().max() > 0
        # The albedo fit recovers the albedo the target was rendered with.
        assert torch.allclose(namespace["params"]["albedo"].detach(), torch.tensor([0.8, 0.7, 0.6]), atol=0.05)
    if page == "index.md":
        assert namespace["verts"].grad.abs().sum() > 0
