"""The documentation site builds with warnings as errors, and documents every public name."""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lumigrad

REPO = Path(__file__).resolve().parents[2]
MKDOCS = shutil.which("mkdocs", path=str(Path(sys.executable).parent))


def public_packages() -> list[str]:
    """lumigrad and every non-private subpackage that declares ``__all__``."""
    names = ["lumigrad"]
    for info in pkgutil.iter_modules(lumigrad.__path__, "lumigrad."):
        if info.ispkg and not info.name.split(".")[-1].startswith("_"):
            if hasattr(importlib.import_module(info.name), "__all__"):
                names.append(info.name)
    return names


def test_public_packages_found():
    pkgs = public_packages()
    for expected in ("lumigrad.ops", "lumigrad.scene", "lumigrad.render", "lumigrad.optim", "lumigrad.viewer"):
        assert expected in pkgs


def _anchors(site: Path) -> set[str]:
    ids: set[str] = set()
    for page in (site / "api").rglob("*.html"):
        ids.update(re.findall(r'id="(lumigrad[\w.]*)"', page.read_text(encoding="utf-8")))
    return ids


def undocumented(anchors: set[str]) -> list[str]:
    """``package.name`` for every ``__all__`` entry with no API-reference heading.

    A name counts as documented under its package (``lumigrad.ops.rasterize``),
    under one of the package's modules (``lumigrad.ops.rasterize.rasterize``), or,
    for the top-level re-exports, under the subpackage that defines it.
    """
    missing = []
    for pkg in public_packages():
        module = importlib.import_module(pkg)
        for name in module.__all__:
            obj = getattr(module, name)
            home = getattr(obj, "__module__", "") or ""
            candidates = {f"{pkg}.{name}", f"{home}.{name}"} | {a for a in anchors if a.startswith(pkg + ".") and a.endswith("." + name)}
            if pkg == "lumigrad":  # re-exports: documented on their subpackage's page
                candidates |= {a for a in anchors if a.endswith("." + name)}
            candidates = {c for c in candidates if not isinstance(sys.modules.get(c), type(sys))}  # not a module heading
            if not candidates & anchors:
                missing.append(f"{pkg}.{name}")
    return missing


def test_api_pages_cover_every_public_name():
    """Fast check without a build: each ``__all__`` name is reached by a ``:::`` directive.

    ``::: pkg`` renders the package's members, except a name that is also a
    submodule (``lumigrad.ops.rasterize``), which griffe resolves to the module;
    those need an explicit ``::: pkg.module.name`` block.
    """
    directives = set()
    for page in (REPO / "docs" / "api").glob("*.md"):
        directives.update(re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.MULTILINE))
    missing = []
    for pkg in public_packages():
        module = importlib.import_module(pkg)
        for name in module.__all__:
            obj = getattr(module, name)
            home = getattr(obj, "__module__", "") or ""
            shadowed = importlib.util.find_spec(f"{pkg}.{name}") is not None if pkg != "lumigrad" else False
            if pkg == "lumigrad":  # re-exports: documented on the page of the subpackage that exports them
                ok = any(d != "lumigrad" and name in getattr(importlib.import_module(d), "__all__", ())
                         for d in directives if d in sys.modules and d.count(".") == 1)
                ok = ok or any(d.endswith("." + name) for d in directives)
            elif shadowed:
                ok = f"{home}.{name}" in directives
            else:
                ok = pkg in directives or f"{home}.{name}" in directives
            if not ok:
                missing.append(f"{pkg}.{name}")
    assert missing == []


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    if MKDOCS is None:
        pytest.skip("mkdocs not installed (pip install -e '.[docs]')")
    site = tmp_path_factory.mktemp("site")
    run = subprocess.run([MKDOCS, "build", "--strict", "--site-dir", str(site)], cwd=REPO,
                         capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return site


@pytest.mark.slow
def test_site_builds_strict_and_documents_every_public_name(built_site):
    for page in ("index.html", "conventions/index.html", "concepts/visibility/index.html",
                 "tutorials/fit-silhouette/index.html", "viewer/index.html", "api/ops/index.html"):
        assert (built_site / page).is_file(), page
    # Tutorial pages include their script's code.
    html = (built_site / "tutorials" / "fit-silhouette" / "index.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", "", html)  # highlighted code is split into spans
    assert "render_silhouette(" in text and "def run(" in text
    assert undocumented(_anchors(built_site)) == []
