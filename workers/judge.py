"""Events → signals for one process: the evaluation step shared by workers and ``rtsig signals``."""

from __future__ import annotations

import numpy as np

from kernels.output import OUT_CODE, OUT_FEED_POSITION, OUT_QUANTITY, ROTATIONS, TIMEFRAMES, TRIGGERS
from rtsig.counters import ROW_WORKER0
from rtsig.layout import CHAINS, KIND_TRANSFER_BTC, VENUE_FUTURES
from rtsig.params import ParameterTable
from rtsig.settings import MARKETS
from rtsig.signals import SignalBuilder, signal_id_for
from workers.evaluate import CANDIDATES_PER_EVENT, evaluate_events, new_candidate_buffers

_MARKET_LOGIC = frozenset(TIMEFRAMES)


class EventJudge:
    """Runs :func:`evaluate_events` on a span of events and builds the signals it finds."""

    def __init__(self, store, params: ParameterTable, builder: SignalBuilder, counter_row: int,
                 capacity: int) -> None:
        self.store = store
        self.params = params
        self.builder = builder
        self.counters = store.counters[counter_row]
        self.cand_info, self.cand_rows = new_candidate_buffers(capacity)
        self._symbols_known = 0
        self._evictions_seen = 0
        self._generations = store.symbols["generation"].copy()
        self._owner = counter_row - ROW_WORKER0 if counter_row >= ROW_WORKER0 else None
        """This worker's index (None offline: one process owns every symbol)."""
        self.receipts: list[int] = []
        """Receipt time (ns) of the input of each signal of the last :meth:`judge` call."""

    def judge(self, events: np.ndarray, message_ids: np.ndarray, first: int, count: int) -> list[dict]:
        """Signals for ``events[first:first+count]`` (modulo the array length), in event order."""
        if CANDIDATES_PER_EVENT * count > len(self.cand_info):
            self.cand_info, self.cand_rows = new_candidate_buffers(count)
        store = self.store
        if int(store.header[0]["symbol_evictions"]) != self._evictions_seen:
            self._renamed()
        if store.symbol_count != self._symbols_known:
            names = store.symbol_list()  # read once: the ingest may add symbols meanwhile
            self.params.sync_symbols(names)
            self._symbols_known = len(names)
        n = evaluate_events(events, first, count, store.book_meta, store.book_levels, store.market,
                            store.trades, store.tickers, self.params.values, self.params.enabled,
                            self.counters, self.cand_info, self.cand_rows, store.symbols,
                            store.feed_cursors, store.dominance, store.quotes, store.transfers,
                            store.venue_quotes, store.venue_names, store.ofi_state,
                            store.ofi_history)
        signals: list[dict] = []
        self.receipts = []
        if n == 0:
            return signals
        # every field the builder needs, as Python values, in one NumPy call per field
        info = self.cand_info[:n]
        index = info["event_index"]
        picked = events[index]
        venues = store.symbols["venue"][picked["symbol"]].tolist()
        for c, (idx, strategy, action, sid, event_time_ms, receipt_ns, venue, kind) in enumerate(zip(
                index.tolist(), info["strategy"].tolist(), info["action"].tolist(),
                picked["symbol"].tolist(), picked["event_time_ms"].tolist(), picked["receipt_ns"].tolist(),
                venues, picked["kind"].tolist())):
            mid = message_ids[idx]
            length = int(mid[0])
            message_id = mid[1:1 + length].tobytes().decode("utf-8", "replace") if length else None
            signal = self.builder.build(strategy, sid, action, self.cand_rows[c], event_time_ms, message_id,
                                        MARKETS[1] if venue == VENUE_FUTURES else MARKETS[0])
            if signal is not None:
                if signal["strategy_id"] in _MARKET_LOGIC:
                    self._market_logic(signal, self.cand_rows[c], kind, message_id)
                signals.append(signal)
                self.receipts.append(receipt_ns)
        return signals

    def _renamed(self) -> None:
        """The ingest gave idle symbols' ids to new symbols: re-resolve their parameters, forget
        their names and (for the symbols this worker owns, whose cool-downs only it writes)
        clear their cool-downs. Runs before any event of a new symbol is judged: the ingest
        bumps ``symbol_evictions`` before it writes the new symbol's first entry."""
        store = self.store
        self._evictions_seen = int(store.header[0]["symbol_evictions"])
        count = store.symbol_count
        generations = store.symbols["generation"][:count].copy()
        for sid in np.flatnonzero(generations != self._generations[:count]).tolist():
            if sid < self._symbols_known:
                self.params.rename(sid, store.symbol_name(sid))
            self.builder.forget(sid)
            if self._owner is None or int(store.symbols[sid]["worker"]) == self._owner:
                store.last_signal_ms[sid] = np.iinfo(np.int64).min
                store.venue_quotes[sid] = np.nan
                store.ofi_state[sid] = 0.0  # no previous book: the next one starts a new window
                store.ofi_history[sid] = 0.0
        self._generations[:count] = generations

    def _market_logic(self, signal: dict, row: np.ndarray, kind: int, message_id: str | None) -> None:
        """The fields of a market-logic signal that are not numbers in the kernel's row: its
        timeframe, its quantity (cross_exchange_spread), its text metadata, and a signal id
        derived from the feed entry that triggered it (feed bodies carry no message id)."""
        store = self.store
        strategy_id = signal["strategy_id"]
        metadata = signal["metadata"]
        signal["timeframe"] = TIMEFRAMES[strategy_id]
        code = int(row[OUT_CODE])
        position = int(row[OUT_FEED_POSITION])
        key = message_id
        if strategy_id == "btc_dominance":
            entry = store.dominance[position & (len(store.dominance) - 1)]
            metadata["rotation"] = ROTATIONS[code]
            metadata["dominance_source"] = _text(entry["source"], entry["source_len"])
            key = f"dominance@{int(entry['ts_ms'])}"
        elif strategy_id == "cross_exchange_spread":
            venue = _text(store.venue_names[code])
            metadata["venue"] = venue
            buy = signal["action"] == "buy"
            metadata["buy_venue"] = "binance" if buy else venue
            metadata["sell_venue"] = venue if buy else "binance"
            quantity = float(row[OUT_QUANTITY])
            if quantity >= 0:
                signal["quantity"] = quantity
            if key is None:  # a feed quote (a book or a mirrored futures book has a message id)
                key = f"{signal['symbol']}@{metadata['event_time']}:{venue}"
        elif strategy_id == "onchain_metrics":
            chain = kind - KIND_TRANSFER_BTC
            ring = store.transfers[chain]
            entry = ring[position & (len(ring) - 1)]
            metadata["chain"] = CHAINS[chain]
            metadata["txid"] = _text(entry["txid"], entry["txid_len"])
            exchange = int(entry["exchange"])
            metadata["exchange"] = _text(store.exchange_names[exchange]) if exchange >= 0 else None
            metadata["trigger"] = TRIGGERS[code]
            key = f"{CHAINS[chain]}:{metadata['txid']}"
        if key != message_id:
            signal["signal_id"] = signal_id_for(key, strategy_id, signal["action"], signal["symbol"],
                                                metadata["event_time"], metadata["market"])


def _text(raw: np.ndarray, length: int | None = None) -> str:
    data = bytes(raw[:int(length)]) if length is not None else bytes(raw).rstrip(b"\0")
    return data.decode("utf-8", "replace")
