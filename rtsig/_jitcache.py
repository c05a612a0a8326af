"""Where Numba keeps compiled code: a directory keyed by a hash of rtsig's source.

Numba's on-disk cache is invalidated only when a function's *own* file changes. Kernels freeze
module-level constants (parameter positions from ``rtsig/registry.py``, output columns from
``kernels/output.py``) and jitted callers embed their callees, so a change elsewhere could leave
stale machine code that silently reads the wrong parameter. Keying the cache directory by a hash
of every source file of the packages that hold jitted code makes any change start a fresh cache.

Must run before the first ``@njit(cache=True)`` decorator executes: ``rtsig/__init__.py`` calls it,
and every jitted module imports ``rtsig`` first. It never imports Numba itself. An operator's
``NUMBA_CACHE_DIR`` is respected.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

_PACKAGES = ("rtsig", "kernels", "workers")
_CONSTANT_MODULES = frozenset({"registry.py", "layout.py", "codes.py", "counters.py", "settings.py",
                               "output.py"})
"""Modules without jitted code whose values jitted code freezes."""


def source_hash(root: Path) -> str:
    """Hash of every module that holds jitted code or constants frozen into it."""
    digest = hashlib.sha256()
    for package in _PACKAGES:
        for path in sorted((root / package).glob("*.py")):
            text = path.read_bytes()
            if b"njit" in text or path.name in _CONSTANT_MODULES:
                digest.update(f"{package}/{path.name}".encode())
                digest.update(text)
    return digest.hexdigest()[:16]


OURS = "RTSIG_NUMBA_CACHE_DIR"
"""Set beside ``NUMBA_CACHE_DIR`` when this module chose it, to tell it from an operator's."""


def configure() -> str | None:
    """Point Numba's cache at ``<checkout>/.numba_cache/<source hash>``; return the directory.

    Without importing Numba: the supervisor and the web processes never load it (~70 MiB RSS
    each), so the choice goes into ``NUMBA_CACHE_DIR``, which Numba reads when it is first
    imported (and into its config directly if it already was). A process started from this one
    with another source tree recomputes its own directory: only a ``NUMBA_CACHE_DIR`` this module
    did not set is taken as the operator's.
    """
    explicit = os.environ.get("NUMBA_CACHE_DIR")
    if explicit and os.environ.get(OURS) != explicit:
        return explicit
    root = Path(__file__).resolve().parent.parent
    directory = root / ".numba_cache" / source_hash(root)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only install: keep Numba's default (__pycache__ beside the sources)
        for name in ("NUMBA_CACHE_DIR", OURS):
            os.environ.pop(name, None)
        return None
    os.environ["NUMBA_CACHE_DIR"] = os.environ[OURS] = str(directory)
    if "numba" in sys.modules:
        from numba import config

        # numba.config defines its options at run time (through globals()), out of the checker's sight
        config.CACHE_DIR = str(directory)  # type: ignore[attr-defined]
    return str(directory)


CACHE_DIR = configure()
