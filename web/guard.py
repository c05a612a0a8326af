"""Who may change configuration, and how often: bearer-token auth and a per-author rate limit."""

from __future__ import annotations

import collections
import hmac
import math
import time
from collections.abc import Callable

from web.envelope import ApiError


def check_token(expected: str | None, authorization: str | None) -> None:
    """401 without credentials, 403 with wrong ones; nothing to check when no token is set."""
    if not expected:
        return
    if not authorization:
        raise ApiError(401, "UNAUTHORIZED", "this change needs 'Authorization: Bearer <RTSIG_API_TOKEN>'",
                       headers={"WWW-Authenticate": 'Bearer realm="rtsig"'})
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(403, "UNAUTHORIZED", "the bearer token is not valid for changes")


class RateLimiter:
    """At most ``per_minute`` changes per ``changed_by`` in any 60-second window (0: no limit).

    Kept per web process: with RTSIG_WEB_WORKERS processes an author can make at most that many
    times the limit (docs/DESIGN.md).
    """

    WINDOW_S = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.recent: dict[str, collections.deque[float]] = {}

    def admit(self, changed_by: str) -> None:
        if self.per_minute <= 0:
            return
        now = self.clock()
        times = self.recent.setdefault(changed_by, collections.deque())
        while times and times[0] <= now - self.WINDOW_S:
            times.popleft()
        if len(times) >= self.per_minute:
            retry = max(1, math.ceil(times[0] + self.WINDOW_S - now))
            raise ApiError(429, "RATE_LIMITED",
                           f"{changed_by!r} made {len(times)} changes in the last minute "
                           f"(limit {self.per_minute}); retry in {retry} s",
                           {"limit_per_minute": self.per_minute, "retry_after_seconds": retry},
                           headers={"Retry-After": str(retry)})
        times.append(now)
        if len(self.recent) > 10_000:  # forget idle authors
            for name in [n for n, t in self.recent.items() if not t or t[-1] <= now - self.WINDOW_S]:
                del self.recent[name]
