"""What the web app needs from the rest of rtsig, injected by the factory (tests build their own)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rtsig.config.service import ChangeResult, ConfigService
from rtsig.settings import Settings
from rtsig.store import Store
from web.guard import RateLimiter


@dataclass
class WebDeps:
    settings: Settings
    config: ConfigService
    store: Store | None
    """The host's shared-memory store (None: market and health data are unavailable)."""
    announce: Callable[[ChangeResult], None] = lambda result: None
    """Tell other replicas about a committed change (a NATS notice in production)."""
    header: np.ndarray | None = None
    """A writable view of the store header: the config epoch this process bumps."""
    counters: np.ndarray | None = None
    """This process's writable counter row."""
    clock: Callable[[], float] = time.time
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(30))
    started: float = field(default_factory=time.time)
    epoch_seen: int = -1
