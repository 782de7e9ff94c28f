"""Pure-torch geometry: rotations, rigid transforms, projection, convention converters, primitives."""
from lumigrad.geometry.chamfer import *  # noqa: F401,F403
from lumigrad.geometry.chamfer import __all__ as _chamfer
from lumigrad.geometry.conventions import *  # noqa: F401,F403
from lumigrad.geometry.conventions import __all__ as _conventions
from lumigrad.geometry.normals import *  # noqa: F401,F403
from lumigrad.geometry.normals import __all__ as _normals
from lumigrad.geometry.primitives import *  # noqa: F401,F403
from lumigrad.geometry.primitives import __all__ as _primitives
from lumigrad.geometry.projection import *  # noqa: F401,F403
from lumigrad.geometry.projection import __all__ as _projection
from lumigrad.geometry.rotations import *  # noqa: F401,F403
from lumigrad.geometry.rotations import __all__ as _rotations
from lumigrad.geometry.transforms import *  # noqa: F401,F403
from lumigrad.geometry.transforms import __all__ as _transforms

__all__ = [*_rotations, *_transforms, *_projection, *_conventions, *_primitives, *_chamfer, *_normals]
