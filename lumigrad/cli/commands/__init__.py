"""One module per top-level ``lumigrad`` command; each defines ``register(subparsers)``.

Adding a command means adding a module here and its name to ``COMMANDS``; the
modules stay independent so that they can grow without touching each other.
"""
COMMANDS = ["demo", "synth", "fit", "view", "nerf", "splat", "trace"]
