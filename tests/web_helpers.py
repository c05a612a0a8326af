"""Shared builders of the operator-API tests (test_web_routes.py, test_web_fuzz.py).

* :func:`web_settings` / :func:`build_app`: a real Falcon app over a real in-memory store, a
  real :class:`~rtsig.config.ConfigService` (SQLite in a test directory unless told otherwise)
  and a manual clock, wrapped in :class:`WebApp`; the ``make_app`` fixture builds them and closes
  their config stores at teardown.
* :func:`put_book`: a book gets into the store the way production does it — a depth message
  decoded by the real :class:`~rtsig.decode.Decoder`.
* :func:`check_envelope`: the envelope of docs/CONTRACT.md §4, asserted on every
  ``/api/v1/strategies`` response a :class:`WebApp` request helper returns; :func:`check_bare`:
  the seed's bare objects of the market routes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from rtsig import codes
from rtsig import counters as C
from rtsig.config import ConfigService
from rtsig.config.service import ChangeResult
from rtsig.decode import Decoder
from rtsig.pressure import PressureSampler
from rtsig.registry import STRATEGIES
from rtsig.settings import Settings
from rtsig.store import Store
from tests.decode_helpers import depth_msg
from web.app import create_app
from web.deps import WebDeps
from web.envelope import ERROR_CODES
from web.guard import RateLimiter

NOW_S = 1_800_000_000.0
"""The wall clock the market routes see unless a test moves it (2027-01-15T08:00:00Z)."""
API = "/api/v1"
MARKET = "/api/v1/metrics"
"""The market routes answer the seed's bare shapes, not the envelope."""
STRATEGY_IDS = tuple(STRATEGIES)
"""Every strategy id of docs/CONTRACT.md §4, in registry order."""

Level = tuple[float, float]
_update_ids = itertools.count(1)


class ManualClock:
    """A wall clock that only moves when a test moves it."""

    def __init__(self, now: float = NOW_S) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def web_settings(data_dir: Path, **changes: Any) -> Settings:
    """Settings with small rings (a ~3 MB store) and the config store under ``data_dir``."""
    base: dict[str, Any] = {"data_dir": data_dir, "max_symbols": 64, "trade_ring": 64,
                            "ticker_ring": 64, "event_ring": 1024}
    base.update(changes)
    return Settings(**base)


# ----------------------------------------------------------------------------- books
def decimal_text(value: float) -> str:
    """A price or quantity as Binance sends it: a decimal string, no exponent."""
    text = f"{value:.8f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def put_book(store: Store, symbol: str, bids: Sequence[Level], asks: Sequence[Level],
             receipt_ns: int, counter_row: int = C.ROW_INGEST) -> None:
    """Decode one depth20 message carrying this book into ``store`` (counted in ``counter_row``)."""
    decoder = Decoder(store, counter_row, allow_new=True, capacity=4)
    message = depth_msg(symbol.lower(), [[decimal_text(p), decimal_text(q)] for p, q in bids],
                        [[decimal_text(p), decimal_text(q)] for p, q in asks],
                        update_id=next(_update_ids))
    assert decoder.add(message, receipt_ns)
    decoder.decode()
    statuses = [codes.status_name(int(s)) for s in decoder.last_status]
    assert statuses == ["ok"], f"the decoder refused the test book of {symbol}: {statuses}"
    assert not decoder.blocked
    store.release_all()  # no workers here: the book counts as judged


def stored_levels(bids: Sequence[Level], asks: Sequence[Level]) -> tuple[list[Level], list[Level]]:
    """What the store keeps of a book: each value as ``float`` of its decimal text."""
    def side(levels: Sequence[Level]) -> list[Level]:
        return [(float(decimal_text(p)), float(decimal_text(q))) for p, q in levels]
    return side(bids), side(asks)


def balanced_book(mid: float, bid_qty: float, ask_qty: float, levels: int = 3,
                  tick: float = 0.5) -> tuple[list[Level], list[Level]]:
    """``levels`` levels per side around ``mid``, every bid ``bid_qty`` and every ask ``ask_qty``."""
    bids = [(mid - tick * (k + 1), bid_qty) for k in range(levels)]
    asks = [(mid + tick * (k + 1), ask_qty) for k in range(levels)]
    return bids, asks


# ----------------------------------------------------------------------------- envelope
def check_envelope(resp: falcon.testing.Result) -> dict:
    """Assert the §4 envelope (keys, success ↔ status, error shape) and return the body."""
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json
    assert isinstance(body, dict) and set(body) == {"success", "data", "error", "metadata"}, body
    assert body["success"] is (resp.status_code < 400), (resp.status_code, body)
    assert body["metadata"] is None or isinstance(body["metadata"], dict), body
    if body["success"]:
        assert body["error"] is None, body
    else:
        error = body["error"]
        assert body["data"] is None, body
        assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, body
        assert error["code"] in ERROR_CODES, body
        assert isinstance(error["message"], str) and error["message"], body
        assert isinstance(error["details"], dict), body
    return body


def check_bare(resp: falcon.testing.Result) -> dict:
    """Assert the market routes' shape (the seed's): a bare object, errors as ``{"error": {…}}``."""
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json
    assert isinstance(body, dict), body
    if resp.status_code >= 400:
        assert set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, body
        assert error["code"] in ERROR_CODES and error["message"], body
    else:
        assert "success" not in body and "error" not in body, body
    return body


def is_bare(path: str) -> bool:
    return path.startswith(MARKET)


def ok(resp: falcon.testing.Result, status: int = 200) -> Any:
    """The ``data`` of a successful enveloped response (the body of a bare one) with ``status``."""
    assert resp.status_code == status, (resp.status_code, resp.text[:2000])
    if getattr(resp, "bare", False):
        return check_bare(resp)
    return check_envelope(resp)["data"]


def failed(resp: falcon.testing.Result, status: int, code: str) -> dict:
    """The ``error`` of a failed response with ``status`` and ``code`` (enveloped or bare)."""
    assert resp.status_code == status, (resp.status_code, resp.text[:2000])
    error = check_bare(resp)["error"] if getattr(resp, "bare", False) else check_envelope(resp)["error"]
    assert error["code"] == code, error
    return error


# ----------------------------------------------------------------------------- the app
@dataclass
class WebApp:
    """A Falcon app over real components, with helpers to feed it and to call it."""

    settings: Settings
    config: ConfigService
    store: Store | None
    deps: WebDeps
    client: falcon.testing.TestClient
    clock: ManualClock
    announced: list[ChangeResult] = field(default_factory=list)
    _sampler: PressureSampler | None = None

    # ----- requests: every /api/v1 response is checked for the envelope
    def request(self, method: str, path: str, **kwargs: Any) -> falcon.testing.Result:
        resp = self.client.simulate_request(method, path, **kwargs)
        resp.bare = is_bare(path)
        if resp.bare:
            check_bare(resp)
        elif path.startswith(API):
            check_envelope(resp)
        return resp

    def get(self, path: str, **kwargs: Any) -> falcon.testing.Result:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> falcon.testing.Result:
        if body is not None:
            kwargs["json"] = body
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> falcon.testing.Result:
        return self.request("DELETE", path, **kwargs)

    def change(self, strategy_id: str, parameters: dict, symbol: str | None = None,
               changed_by: str = "alice", **extra: Any) -> falcon.testing.Result:
        """POST a parameter change (global, or one symbol's override)."""
        path = f"{API}/strategies/{strategy_id}/config" + (f"/{symbol}" if symbol else "")
        return self.post(path, {"parameters": parameters, "changed_by": changed_by, **extra})

    # ----- market data
    def book(self, symbol: str, bids: Sequence[Level], asks: Sequence[Level],
             received_s: float | None = None) -> None:
        """Put a book into the store as if the ingest received it at ``received_s`` (default: now)."""
        assert self.store is not None
        at = self.clock() if received_s is None else received_s
        put_book(self.store, symbol, bids, asks, round(at * 1e9))

    def sample(self, second: float) -> int:
        """Write one pressure-history sample of every symbol at ``second`` (the supervisor's job)."""
        assert self.store is not None
        if self._sampler is None:
            self._sampler = PressureSampler(self.store)
        return self._sampler.sample(second)

    # ----- what a committed change leaves behind
    @property
    def epoch(self) -> int:
        assert self.store is not None
        return int(self.store.header[0]["config_epoch"])

    def config_changes(self, strategy_id: str) -> int:
        """The web process's config-changes counter of one strategy."""
        assert self.store is not None
        return int(self.store.counters[C.ROW_WEB][C.CONFIG_CHANGES_BASE + STRATEGY_IDS.index(strategy_id)])


def build_app(settings: Settings, *, with_store: bool = True, limiter: RateLimiter | None = None,
              config: ConfigService | None = None, n_workers: int | None = None,
              now: float = NOW_S) -> WebApp:
    """A :class:`WebApp` as ``web.server`` would build it, with injected clock and limiter."""
    store = Store.in_memory(settings, n_workers=n_workers) if with_store else None
    service = config if config is not None else ConfigService(settings)
    clock = ManualClock(now)
    announced: list[ChangeResult] = []
    deps = WebDeps(settings, service, store, announce=announced.append,
                   header=None if store is None else store.header,
                   counters=None if store is None else store.counters[C.ROW_WEB],
                   clock=clock, limiter=limiter if limiter is not None else RateLimiter(30),
                   started=now - 12.5)
    client = falcon.testing.TestClient(create_app(deps))
    return WebApp(settings, service, store, deps, client, clock, announced)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., WebApp]]:
    """Factory: ``make_app(**settings_changes, with_store=, limiter=, n_workers=, now=)``.

    Every app made in one test shares the test's SQLite config store (two apps are two web
    processes of one host); their config services are closed at teardown.
    """
    made: list[WebApp] = []

    def make(*, with_store: bool = True, limiter: RateLimiter | None = None,
             n_workers: int | None = None, now: float = NOW_S, **settings_changes: Any) -> WebApp:
        settings = web_settings(tmp_path / "config", **settings_changes)
        app = build_app(settings, with_store=with_store, limiter=limiter, n_workers=n_workers, now=now)
        made.append(app)
        return app

    try:
        yield make
    finally:
        for app in made:
            app.config.close()


@pytest.fixture
def web_app(make_app: Callable[..., WebApp]) -> WebApp:
    """The default app: trading BTCUSDT/ETHUSDT/BNBUSDT, no token, 30 changes/min per author."""
    return make_app()
