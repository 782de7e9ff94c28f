"""A live browser view of meshes, cameras and a running fit (``lumigrad view``).

:class:`ViewerServer` serves a small static WebGL page (bundled, no network
needed) and the meshes and cameras of a file or folder as JSON; the page polls
and redraws when the files change, so a fit that rewrites its current mesh (for
example with :func:`~lumigrad.scene.write_mesh` in a :func:`~lumigrad.optim.fit`
callback) is shown as it runs. :func:`save_cameras` writes the cameras beside it.
"""
from lumigrad.viewer.scene_state import load_cameras, save_cameras, scene_payload, state_version
from lumigrad.viewer.server import ViewerServer

__all__ = ["ViewerServer", "save_cameras", "load_cameras", "scene_payload", "state_version"]
