"""Applications, one module per task; each has a config dataclass, ``fit_*`` (Python API) and ``run_*`` (output folder).

* :mod:`lumigrad.tasks.shape`: multi-view mesh reconstruction (``lumigrad fit shape``).
* :mod:`lumigrad.tasks.pose`: 6-DoF pose of a known mesh (``lumigrad fit pose``).
* :mod:`lumigrad.tasks.texture`: albedo texture of a UV-mapped mesh (``lumigrad fit texture``).
* :mod:`lumigrad.tasks.material`: constant GGX parameters (``lumigrad fit material``).
* :mod:`lumigrad.tasks.lighting`: directional + ambient or SH lighting (``lumigrad fit lighting``).
* :mod:`lumigrad.tasks.garment`: template garment fitting with a body-penetration penalty (``lumigrad fit garment``).
* :mod:`lumigrad.tasks.inverse`: staged joint shape + albedo + lighting (``lumigrad fit inverse``).
* :mod:`lumigrad.tasks.synth`: synthetic datasets with ground truth (``lumigrad synth``).
* :mod:`lumigrad.tasks.reconstruct`: the ``lumigrad demo`` reconstruction.

Modules are imported on demand (``from lumigrad.tasks.pose import fit_pose``) to keep ``import lumigrad`` fast.
"""
