"""Another checkout's ``lumigrad`` loaded beside this one, for A/B runs in one process (``raster_ab.py``,
``w2_profile.py``): alternating calls in one process separate a few percent from a shared machine's noise."""
from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile


def copy_base(src: str, prefix: str = "lumigrad_ab_") -> str:
    """``src/lumigrad`` as package ``lumigrad_base`` in a temporary directory (every ``lumigrad`` import in it
    renamed); returns that directory, to put on ``sys.path``. Removed at exit."""
    root = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, root, True)
    dst = os.path.join(root, "lumigrad_base")
    shutil.copytree(os.path.join(src, "lumigrad"), dst, ignore=shutil.ignore_patterns("__pycache__"))
    pat = re.compile(r"\blumigrad(?=[.\s]|$)")
    for d, _, files in os.walk(dst):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                with open(path) as fh:
                    text = fh.read()
                with open(path, "w") as fh:
                    fh.write(pat.sub("lumigrad_base", text))
    return root
