"""The price path each signal is scored against: what the market did, from the same recorded data.

:class:`PriceTape` is the offline run's ``on_events`` hook. It sees every decoded batch's events
while their ring entries are still in the store (before they are judged), so it records exactly
the data the decoder accepted — a book dropped as ``book_price_mismatch`` or ``crossed_book`` never
becomes a price — at the events' own event times:

* a depth snapshot → its mid, ``(best bid + best ask) / 2`` (source ``mid``);
* a trade or aggTrade → its price (source ``trade``);
* a 24 h ticker → its last price ``c`` (source ``ticker``).

bookTickers and mark prices make no event (they only update the symbol's newest quote), so they
are not on the tape. Per (symbol, market) the tape then offers one series per source, sorted by
event time (a stable sort: arrival order within a millisecond).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtsig import codes
from rtsig.layout import ASK, BID, PRICE

SOURCES = ("mid", "trade", "ticker")
SOURCE_MID, SOURCE_TRADE, SOURCE_TICKER = 0, 1, 2
PRICE_CHOICES = ("auto",) + SOURCES
"""``--price``: ``auto`` is the mid where the symbol has books, else trades, else tickers."""


@dataclass(frozen=True)
class Series:
    """One symbol's prices of one source: ``times_ms`` ascending, ``prices`` beside them."""

    source: str
    times_ms: np.ndarray
    prices: np.ndarray


class PriceTape:
    """Collects (symbol id, event time, source, price) of every decoded event."""

    def __init__(self, store) -> None:
        self.store = store
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, events: np.ndarray, n_events: int) -> None:
        if n_events <= 0:
            return
        store = self.store
        ev = events[:n_events]
        kinds, sids, positions = ev["kind"], ev["symbol"], ev["position"]
        prices = np.full(n_events, np.nan)
        sources = np.full(n_events, -1, dtype=np.int8)
        depth = kinds == codes.KIND_DEPTH
        if depth.any():
            slots = positions[depth] & (store.layout.book_ring - 1)
            bid = store.book_levels[sids[depth], slots, BID, 0, PRICE]
            ask = store.book_levels[sids[depth], slots, ASK, 0, PRICE]
            prices[depth] = (bid + ask) / 2
            sources[depth] = SOURCE_MID
        trade = (kinds == codes.KIND_TRADE) | (kinds == codes.KIND_AGG_TRADE)
        if trade.any():
            slots = positions[trade] & (store.layout.trade_ring - 1)
            prices[trade] = store.trades["price"][sids[trade], slots]
            sources[trade] = SOURCE_TRADE
        ticker = kinds == codes.KIND_TICKER
        if ticker.any():
            slots = positions[ticker] & (store.layout.ticker_ring - 1)
            prices[ticker] = store.tickers["last_price"][sids[ticker], slots]
            sources[ticker] = SOURCE_TICKER
        keep = (sources >= 0) & np.isfinite(prices) & (prices > 0)
        self._chunks.append((sids[keep].astype(np.int32), ev["event_time_ms"][keep].astype(np.int64),
                             sources[keep], prices[keep]))

    def series(self) -> dict[tuple[str, str], dict[str, Series]]:
        """``{(symbol, market): {source: Series}}`` of everything seen so far."""
        if not self._chunks:
            return {}
        sids = np.concatenate([c[0] for c in self._chunks])
        times = np.concatenate([c[1] for c in self._chunks])
        sources = np.concatenate([c[2] for c in self._chunks])
        prices = np.concatenate([c[3] for c in self._chunks])
        out: dict[tuple[str, str], dict[str, Series]] = {}
        for sid in np.unique(sids).tolist():
            key = (self.store.symbol_name(sid), self.store.symbol_market(sid))
            mine = sids == sid
            for s, name in enumerate(SOURCES):
                pick = mine & (sources == s)
                if not pick.any():
                    continue
                t, p = times[pick], prices[pick]
                order = np.argsort(t, kind="stable")
                out.setdefault(key, {})[name] = Series(name, t[order], p[order])
        return out

    def time_range(self) -> tuple[int, int] | None:
        """First and last event time on the tape (ms), or None when it is empty."""
        stamps = [c[1] for c in self._chunks if len(c[1])]
        if not stamps:
            return None
        return int(min(s.min() for s in stamps)), int(max(s.max() for s in stamps))


def pick_series(by_source: dict[str, Series], price: str) -> Series | None:
    """The series a symbol's signals are scored on: ``price`` itself, or for ``auto`` the first
    of mid, trade, ticker that the symbol has."""
    if price != "auto":
        return by_source.get(price)
    for name in SOURCES:
        if name in by_source:
            return by_source[name]
    return None
