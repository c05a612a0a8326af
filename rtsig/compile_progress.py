"""A progress line per module while Numba compiles (the first start after a change, ~1 min).

Numba announces every real compilation (a cache miss; loading from the cache announces nothing)
as a ``numba:compile`` event. :func:`compile_progress` listens for the outermost ones and calls
``say`` the first time a function of a module compiles — so a start whose cache is valid says
nothing, and a cold one says what it is doing instead of being silent for a minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def compile_progress(say: Callable[[str], None]) -> Iterator[dict]:
    """While active, ``say`` one line per module whose functions Numba compiles, and one at the
    end if anything was compiled. Yields the tally (``functions``, ``modules``, ``seconds``)."""
    from numba.core import event as ev

    tally: dict[str, Any] = {"functions": 0, "modules": [], "seconds": 0.0}
    started = time.monotonic()
    depth = [0]

    class Progress(ev.Listener):
        def on_start(self, event) -> None:
            depth[0] += 1
            if depth[0] != 1:
                return  # a callee compiled for its caller
            dispatcher = (event.data or {}).get("dispatcher")
            func = getattr(dispatcher, "py_func", None)
            module = getattr(func, "__module__", None) or "?"
            tally["functions"] += 1
            if module not in tally["modules"]:
                if not tally["modules"]:
                    say(f"Numba: compiling {module} — not in the cache (the first start after a "
                        f"change, or a new CPU) so every module compiles, a minute or two on 2 "
                        f"cores; later starts load the cache in about a second")
                else:
                    say(f"Numba: compiling {module} ({time.monotonic() - started:.0f} s so far)")
                tally["modules"].append(module)

        def on_end(self, event) -> None:
            depth[0] -= 1

    with ev.install_listener("numba:compile", Progress()):
        yield tally
    tally["seconds"] = round(time.monotonic() - started, 1)
    if tally["functions"]:
        say(f"Numba: compiled {tally['functions']} functions in {len(tally['modules'])} "
            f"modules in {tally['seconds']:.0f} s; cached for the next start")
