"""Finds the Loupe Python binding (loupe.py) and the library (libloupe.so.0) for the plug-in.

In this order:
  1. $LOUPE_LIBRARY (the library file) and $LOUPE_PYTHON_DIR (the folder holding loupe.py);
  2. loupe_paths.json beside this file, written by the install target (cmake --build build
     --target loupe-krita-install): {"library": ".../libloupe.so.0", "binding_dir": "..."};
  3. a loupe.py copied beside this file (the install target copies it) and libloupe.so.0 on the
     loader's path (LD_LIBRARY_PATH, ldconfig).
No Krita here: the tests import it as a plain module.
"""
import importlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "loupe_paths.json")


def read_config(path=CONFIG):
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
        return cfg if isinstance(cfg, dict) else {}
    except (OSError, ValueError):
        return {}


def resolve(environ=None, config=None):
    """(library, binding_dir): where the binding and the library are taken from (None: the defaults)."""
    environ = os.environ if environ is None else environ
    cfg = read_config() if config is None else config
    library = environ.get("LOUPE_LIBRARY") or cfg.get("library") or None
    binding_dir = environ.get("LOUPE_PYTHON_DIR") or cfg.get("binding_dir") or None
    if binding_dir is None and os.path.exists(os.path.join(HERE, "loupe.py")):
        binding_dir = HERE
    return library, binding_dir


def load_binding():
    """Imports the binding (module loupe) from where resolve() says; raises ImportError saying
    where it looked and how to point the plug-in at Loupe."""
    library, binding_dir = resolve()
    if library:
        os.environ["LOUPE_LIBRARY"] = library  # the binding reads it when imported
    if binding_dir and binding_dir not in sys.path:
        sys.path.insert(0, binding_dir)
    try:
        return importlib.import_module("loupe")
    except (ImportError, OSError) as e:
        raise ImportError(
            "Loupe is not found (%s). Looked for the binding in %s and the library at %s. Install with "
            "`cmake --build build --target loupe-krita-install`, or set LOUPE_LIBRARY (libloupe.so.0) and "
            "LOUPE_PYTHON_DIR (the folder with loupe.py) before starting Krita."
            % (e, binding_dir or "Python's path", library or "the loader's path (libloupe.so.0)")) from None
