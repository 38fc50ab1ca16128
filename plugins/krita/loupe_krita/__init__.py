"""Loupe for Krita: a docker running the Loupe SDK in-process (no server).

The docker (docker.py) builds its form from the SDK's task description; the logic lives in plain
modules (forms, prepare, pixels, results, engine, locate) that import without Krita (the tests use
them so), and Krita is only touched in adapter.py, docker.py and extension.py.
"""
try:
    import krita  # noqa: F401  (present only inside Krita)
except ImportError:
    krita = None

if krita is not None:
    from .extension import register
    register()
