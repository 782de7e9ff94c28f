"""`lumigrad view`: the server's routes, live updates, CLI errors, and a headless-Chromium screenshot."""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from lumigrad.cli.main import main
from lumigrad.geometry import icosphere
from lumigrad.scene import Camera, Mesh, write_mesh
from lumigrad.viewer import ViewerServer, load_cameras, save_cameras

REPO = Path(__file__).resolve().parents[2]
BG = np.array([30, 33, 39])  # the page's background, 255 * (0.118, 0.129, 0.153)


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def _decode(mesh: dict) -> tuple[np.ndarray, np.ndarray]:
    verts = np.frombuffer(base64.b64decode(mesh["verts"]), dtype="<f4").reshape(mesh["num_verts"], 3)
    faces = np.frombuffer(base64.b64decode(mesh["faces"]), dtype="<u4").reshape(mesh["num_faces"], 3)
    return verts, faces


def _cameras(n: int = 3) -> Camera:
    ang = torch.arange(n, dtype=torch.float32) * (6.2832 / n)
    eye = torch.stack([3 * torch.sin(ang), torch.full_like(ang, 0.5), 3 * torch.cos(ang)], -1)
    return Camera.look_at(eye, torch.zeros(n, 3), width=64, height=48)


@pytest.fixture
def scene_dir(tmp_path):
    v, f = icosphere(2)
    write_mesh(tmp_path / "current.obj", Mesh(v, f))
    save_cameras(tmp_path / "cameras.json", _cameras())
    return tmp_path


def test_server_routes_and_live_update(scene_dir):
    server = ViewerServer(scene_dir, port=0, poll=0.1)
    server.start()
    try:
        status, ctype, body = _get(server.url)
        assert status == 200 and ctype.startswith("text/html") and b"viewer.js" in body
        status, ctype, body = _get(server.url + "static/viewer.js")
        assert status == 200 and b"WebGL" in body
        scene = json.loads(_get(server.url + "api/scene")[2])
        assert [m["name"] for m in scene["meshes"]] == ["current.obj"]
        verts, faces = _decode(scene["meshes"][0])
        assert verts.shape == (162, 3) and faces.shape == (320, 3) and faces.max() == 161
        assert np.allclose(np.linalg.norm(verts, axis=1), 1.0, atol=1e-5)
        assert len(scene["cameras"]) == 3 and scene["errors"] == []
        # The camera frame survives the JSON round trip: camera 0 sits at (0, 0.5, 3).
        c2w = np.array(scene["cameras"][0]["cam_to_world"])
        assert np.allclose(c2w[:3, 3], [0, 0.5, 3], atol=1e-5)
        v0 = json.loads(_get(server.url + "api/version")[2])["version"]
        assert v0 == scene["version"]

        # A fit rewrites its mesh: the version changes and the scene has the new geometry.
        time.sleep(0.02)
        v, f = icosphere(1, radius=2.0)
        write_mesh(scene_dir / "current.obj", Mesh(v, f))
        v1 = json.loads(_get(server.url + "api/version")[2])["version"]
        assert v1 != v0
        scene = json.loads(_get(server.url + "api/scene")[2])
        verts, faces = _decode(scene["meshes"][0])
        assert scene["version"] == v1 and faces.shape == (80, 3)
        assert np.allclose(np.linalg.norm(verts, axis=1), 2.0, atol=1e-5)

        # Half-written or broken files are reported, not fatal; hidden temporaries are ignored.
        (scene_dir / "broken.obj").write_text("v 1 2\nf 1 2 9\n")
        (scene_dir / ".current.tmp123.obj").write_text("garbage")
        scene = json.loads(_get(server.url + "api/scene")[2])
        assert [m["name"] for m in scene["meshes"]] == ["current.obj"]
        assert len(scene["errors"]) == 1 and scene["errors"][0].startswith("broken.obj")

        for bad in ("static/../server.py", "static/.hidden", "nothing"):
            with pytest.raises(urllib.error.HTTPError) as exc:
                _get(server.url + bad)
            assert exc.value.code == 404
    finally:
        server.stop()


def test_cameras_round_trip(tmp_path):
    cams = _cameras(2)
    save_cameras(tmp_path / "cameras.json", cams)
    back = load_cameras(tmp_path / "cameras.json")
    assert torch.allclose(back.world_to_cam.float(), cams.world_to_cam, atol=1e-6)
    assert torch.allclose(back.K.float(), cams.K) and (back.width, back.height) == (64, 48)
    (tmp_path / "bad.json").write_text('{"K": 1}')
    with pytest.raises(ValueError, match="load_cameras"):
        load_cameras(tmp_path / "bad.json")


def test_bad_input(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="ViewerServer"):
        ViewerServer(tmp_path / "missing")
    with pytest.raises(ValueError, match="port"):
        ViewerServer(tmp_path, port=70000)
    with pytest.raises(TypeError, match="root"):
        ViewerServer(3)
    assert main(["view", str(tmp_path / "missing.obj"), "--no-browser", "--exit-after", "1"]) == 2
    assert "lumigrad: error: ViewerServer(): no such file or folder" in capsys.readouterr().err
    for args in (["--port", "-1"], ["--port", "x"], ["--exit-after", "0"], ["--poll", "-2"]):
        with pytest.raises(SystemExit) as exc:
            main(["view", str(tmp_path), "--no-browser", *args])
        assert exc.value.code == 2, args


def test_cli_exits_after(tmp_path, capsys):
    t0 = time.perf_counter()
    assert main(["view", str(tmp_path), "--port", "0", "--no-browser", "--exit-after", "0.5"]) == 0
    assert time.perf_counter() - t0 < 10
    assert "http://127.0.0.1:" in capsys.readouterr().out


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _screenshot(url: str, folder: Path) -> np.ndarray:
    folder.mkdir()
    shot = folder / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={folder / 'profile'}", f"--screenshot={shot}", "--window-size=640,480",
           "--virtual-time-budget=5000", url]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.is_file(), run.stderr[-2000:]
    return iio.imread(shot)[..., :3].astype(int)


def _check_screenshot(img: np.ndarray, name: str) -> None:
    assert img.shape[:2] == (480, 640), name
    far = np.abs(img - BG).sum(-1) > 60
    # The sphere is framed at the centre: the centre patch is shaded mesh (orange: R > G > B).
    centre = img[220:260, 300:340]
    assert far[220:260, 300:340].mean() > 0.95, name
    assert (centre[..., 0] > centre[..., 1]).all() and (centre[..., 1] > centre[..., 2]).all(), name
    # Away from the mesh and the text overlays the page is background.
    assert not far[120:140, 20:60].any() and not far[400:440, 20:60].any(), name
    # Camera frusta are drawn in yellow (high R and G, low B).
    yellow = (img[..., 0] > 150) & (img[..., 1] > 150) & (img[..., 2] < 120)
    assert yellow.sum() > 50, name
    # The mesh covers a plausible share of the picture (not blank, not a full-screen fill).
    assert 0.02 < far.mean() < 0.6, name


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_page_draws_mesh_in_headless_chromium(scene_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lumigrad.cli.main", "view", str(scene_dir), "--port", "0", "--no-browser", "--exit-after", "600"],
        stdout=subprocess.PIPE, stderr=(tmp_path / "server.err").open("w"), text=True, env=env, cwd=REPO,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 180)  # startup imports torch and warp
        assert ready, "lumigrad view printed nothing within 180 s"
        line = proc.stdout.readline()  # "lumigrad view: serving DIR at URL (Ctrl-C to stop)"
        assert " at http://127.0.0.1:" in line, (line, (tmp_path / "server.err").read_text()[-2000:])
        url = line.split(" at ", 1)[1].split()[0]
        for query, name in (("", "webgl"), ("?renderer=2d", "canvas2d")):
            _check_screenshot(_screenshot(url + query, tmp_path / name), name)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
