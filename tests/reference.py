"""Slow, obvious reference implementations of the kernels, written from docs/STRATEGIES.md.

Plain lists, tuples and dicts; nothing from ``kernels/``. Each strategy returns None (no signal)
or ``(action, confidence, price, current_price, indicators, metadata)`` with the indicators and
metadata as dicts. ``ticker_velocity`` may also return :data:`OVERRUN`.

Sums are explicit left-to-right loops (oldest / best first), not ``sum()``, whose float
algorithm changed in Python 3.12.
"""

from __future__ import annotations

import math

CAP = 0.95
BUY, SELL = 1, -1
OVERRUN = "overrun"


def clamp(x, lo, hi):
    return max(lo, min(hi, x))


def total(values):
    result = 0.0
    for v in values:
        result = result + v
    return result


# --- orderbook_skew ------------------------------------------------------------------------------

def orderbook_skew(bids, asks, params):
    """``bids``/``asks``: lists of (price, qty), best first."""
    if not bids or not asks:
        return None
    top_levels = int(params["top_levels"])
    B = total(q for _, q in bids[:top_levels])
    A = total(q for _, q in asks[:top_levels])
    if B + A < params["min_total_volume"] or A == 0:
        return None
    best_bid, best_ask = bids[0][0], asks[0][0]
    if best_bid <= 0:  # decision: cannot happen after decoding; no signal rather than an error
        return None
    ratio = B / A
    spread_percent = (best_ask - best_bid) / best_bid * 100
    if spread_percent > params["min_spread_percent"]:
        return None
    bt, st = params["buy_threshold"], params["sell_threshold"]
    if ratio > bt:
        action, imb, price = BUY, clamp((ratio - bt) / bt, 0, 1), best_bid
    elif ratio < st:
        action, imb, price = SELL, clamp((st - ratio) / st, 0, 1), best_ask
    else:
        return None
    spr = clamp(1 - spread_percent / params["min_spread_percent"], 0, 1)
    iw, sw, base = params["imbalance_weight"], params["spread_weight"], params["base_confidence"]
    w = iw + sw
    if w == 0:
        confidence = base
    else:
        confidence = min(CAP, base + (CAP - base) * (iw * imb + sw * spr) / w)
    indicators = {"bid_volume": B, "ask_volume": A, "ratio": ratio,
                  "spread_percent": spread_percent}
    metadata = {"top_bid": best_bid, "top_ask": best_ask}
    return action, confidence, price, (best_bid + best_ask) / 2, indicators, metadata


# --- trade_momentum ------------------------------------------------------------------------------

def trade_momentum(history, params):
    """``history``: dict trades ``{"E", "p", "q", "m"}`` oldest first, the current one last."""
    current = history[-1]
    if current["q"] < params["min_quantity"]:
        return None
    window = history[-int(params["momentum_window"]):]
    decay_ms = params["time_decay_seconds"] * 1000
    W = [t for t in window if not current["E"] - t["E"] > decay_ms]
    if len(W) < 2:
        return None
    p_first, p_last = W[0]["p"], current["p"]
    if p_first <= 0:  # decision: cannot happen after decoding
        return None
    sum_q = total(t["q"] for t in W)
    if sum_q == 0:
        return None
    pw, qw, mw = params["price_weight"], params["quantity_weight"], params["maker_weight"]
    if pw + qw + mw == 0:
        return None
    side = -1 if current["m"] else 1
    price_c = clamp((p_last - p_first) / p_first * 10_000 / params["price_scale_bps"], -1, 1)
    mean_q = sum_q / len(W)
    qty_c = side * min(1, current["q"] / mean_q)
    buyer = total(t["q"] for t in W if not t["m"])
    seller = total(t["q"] for t in W if t["m"])
    flow_c = (buyer - seller) / sum_q
    momentum = (pw * price_c + qw * qty_c + mw * flow_c) / (pw + qw + mw)
    bt, st = params["buy_threshold"], params["sell_threshold"]
    if momentum > bt and abs(bt) != 1:
        action, threshold = BUY, bt
    elif momentum < st and abs(st) != 1:
        action, threshold = SELL, st
    else:
        return None
    base = params["base_confidence"]
    confidence = min(CAP, base + (abs(momentum) - abs(threshold)) / (1 - abs(threshold))
                     * (CAP - base))
    indicators = {"momentum": momentum, "price_component": price_c, "quantity_component": qty_c,
                  "flow_component": flow_c, "window_trades": len(W)}
    return action, confidence, p_last, p_last, indicators, {}


# --- ticker_velocity -----------------------------------------------------------------------------

def ticker_velocity(history, lowest, params):
    """``history``: (E ms, c, v) tuples oldest first, the current one last; entries before index
    ``lowest`` have been overwritten (unknown)."""
    E_cur = history[-1][0]
    window_ms = params["time_window"] * 1000
    start = len(history) - 1
    while start - 1 >= 0 and E_cur - history[start - 1][0] <= window_ms:
        start -= 1
    if lowest > 0 and start <= lowest:
        return OVERRUN  # the window may reach into overwritten entries
    S = history[start:]
    if len(S) < 3:
        return None
    (E_first, c_first, v_first), (E_last, c_last, v_last) = S[0], S[-1]
    span = (E_last - E_first) / 1000
    if span < params["time_window"] / 4:
        return None

    def vel(i, j):
        (E_i, c_i, _), (E_j, c_j, _) = S[i], S[j]
        return (c_j - c_i) / c_i * 100 / ((E_j - E_i) / 60_000)

    if c_first == 0:  # decision: no signal rather than a division by zero
        return None
    change = (c_last - c_first) / c_first * 100
    if abs(change) < params["min_price_change"]:
        return None
    velocity = vel(0, len(S) - 1)
    mid = (E_first + E_last) / 2
    k = min(range(1, len(S) - 1), key=lambda i: (abs(S[i][0] - mid), i))
    if S[k][1] == 0 or S[k][0] in (E_first, E_last):  # decision: zero c_i or zero time step
        return None
    acceleration = vel(k, len(S) - 1) - vel(0, k)
    volume_change = (v_last - v_first) / v_first * 100 if v_first > 0 else math.nan
    if params["volume_confirmation"]:
        if not (v_first > 0 and volume_change >= params["min_volume_change"]):
            return None
    if velocity > params["buy_threshold"]:
        action, d, threshold = BUY, 1, params["buy_threshold"]
    elif velocity < params["sell_threshold"]:
        action, d, threshold = SELL, -1, params["sell_threshold"]
    else:
        return None
    confidence = min(CAP, params["base_confidence"]
                     + min(0.2, (abs(velocity) - abs(threshold)) / 10)
                     + params["acceleration_weight"] * clamp(d * acceleration / 10, -0.1, 0.1))
    indicators = {"velocity": velocity, "acceleration": acceleration,
                  "price_change_percent": change, "time_window": span,
                  "volume_change_percent": volume_change}
    return action, confidence, c_last, c_last, indicators, {}


# --- depth metrics -------------------------------------------------------------------------------

def depth_metrics(bids, asks):
    """Dict of every depth metric; NaN where it cannot be computed."""
    nan = math.nan
    B = total(q for _, q in bids)
    A = total(q for _, q in asks)
    m = {"bid_volume": B, "ask_volume": A, "total_liquidity": B + A,
         "bid_depth_5": total(q for _, q in bids[:5]), "ask_depth_5": total(q for _, q in asks[:5]),
         "bid_depth_10": total(q for _, q in bids[:10]),
         "ask_depth_10": total(q for _, q in asks[:10]),
         "bid_levels": len(bids), "ask_levels": len(asks)}
    if B + A > 0:
        m["imbalance_ratio"] = (B - A) / (B + A)
        m["buy_pressure"] = 100 * B / (B + A)
        m["sell_pressure"] = 100 * A / (B + A)
        m["net_pressure"] = m["buy_pressure"] - m["sell_pressure"]
    else:
        m["imbalance_ratio"] = m["buy_pressure"] = m["sell_pressure"] = m["net_pressure"] = nan
    m["best_bid"] = bids[0][0] if bids else nan
    m["best_ask"] = asks[0][0] if asks else nan
    if bids and asks:
        m["spread_abs"] = m["best_ask"] - m["best_bid"]
        m["mid_price"] = (m["best_bid"] + m["best_ask"]) / 2
        m["spread_bps"] = m["spread_abs"] / m["mid_price"] * 10_000 if m["mid_price"] else nan
    else:
        m["spread_abs"] = m["mid_price"] = m["spread_bps"] = nan
    for name, side, volume in (("bid", bids, B), ("ask", asks, A)):
        m[f"vwap_{name}"] = total(p * q for p, q in side) / volume if volume > 0 else nan
        if side:
            largest = max(q for _, q in side)
            price, qty = next((p, q) for p, q in side if q == largest)  # nearest the top
            m[f"strongest_{name}_price"], m[f"strongest_{name}_volume"] = price, qty
        else:
            m[f"strongest_{name}_price"] = m[f"strongest_{name}_volume"] = nan
    m["vwap_spread"] = m["vwap_ask"] - m["vwap_bid"]
    return m


# --- market-logic strategies (docs/STRATEGIES.md "Market-logic strategies") ---------------------------

NO_PRICE = "no_price"
"""A market-logic signal whose symbol has no Binance price: dropped (``no_price``)."""


def binance_price(last_trade, last_book_mid, last_ticker):
    """The newest trade price, else the newest book's mid, else the ticker's last price."""
    for value in (last_trade, last_book_mid, last_ticker):
        if value is not None:
            return value
    return None


def btc_dominance(samples, params, lookback=8192):
    """``samples``: every sample so far as (ts, dominance, price or None), oldest first; judges the
    last. The past sample is the newest earlier one with ts <= t - window (among ``lookback``)."""
    t, D, price = samples[-1]
    cutoff = t - params["window_hours"] * 3_600_000
    past = None
    earlier = samples[:-1][-lookback:]
    for ts, d, _ in reversed(earlier):
        if ts <= cutoff:
            past = d
            break
    if past is None:
        return None
    change = D - past
    thr = params["change_threshold"]
    if D > params["high_threshold"] and change > 0:
        action, confidence, rotation = BUY, 0.80, "to_btc"
    elif D < params["low_threshold"] and change < 0:
        action, confidence, rotation = SELL, 0.75, "to_alts"
    elif abs(change) >= thr:
        action = BUY if change > 0 else SELL
        confidence = min(CAP, 0.60 + 0.35 * min(1.0, (abs(change) - thr) / thr))
        rotation = "momentum"
    else:
        return None
    if price is None:
        return NO_PRICE
    return (action, confidence, price, price,
            {"dominance": D, "dominance_change": change, "window_hours": params["window_hours"]},
            {"rotation": rotation})


def cross_exchange_spread(quotes, t, params):
    """``quotes``: venue name → (bid, ask, ts) of the newest quote of each venue, ``"binance"``
    the spot book's; ``t`` the triggering quote's time. Returns the signal with metadata
    ``venue``, ``buy_venue``, ``sell_venue`` and ``quantity``."""
    max_age = params["max_quote_age_seconds"] * 1000
    if "binance" not in quotes:
        return None
    b_bid, b_ask, b_ts = quotes["binance"]
    if t - b_ts > max_age:
        return None
    m_b = (b_bid + b_ask) / 2
    candidates = []
    for venue, (bid, ask, ts) in quotes.items():
        if venue == "binance" or t - ts > max_age:
            continue
        m_v = (bid + ask) / 2
        candidates.append((venue, (m_v - m_b) / m_b * 100, m_v))
    if not candidates:
        return None
    # largest |spread|; ties: venue name order
    candidates.sort(key=lambda c: c[0])
    venue, spread, m_v = candidates[0]
    for c in candidates[1:]:
        if abs(c[1]) > abs(spread):
            venue, spread, m_v = c
    thr = params["spread_threshold_percent"]
    if not abs(spread) >= thr:
        return None
    action = BUY if spread > 0 else SELL
    price = b_ask if action == BUY else b_bid
    confidence = min(CAP, 0.60 + 0.35 * min(1.0, (abs(spread) - thr) / thr))
    quantity = math.floor(params["max_position_size"] / price * 1e8) / 1e8
    return (action, confidence, price, m_b,
            {"spread_percent": spread, "binance_mid": m_b, "venue_mid": m_v},
            {"venue": venue, "buy_venue": "binance" if action == BUY else venue,
             "sell_venue": venue if action == BUY else "binance", "quantity": quantity})


def onchain_metrics(transfers, chain, params, lookback=4096):
    """``transfers``: the chain's transfers with a direction so far, oldest first, as
    (ts, value, direction, price or None); judges the last (``other`` ones never get here)."""
    t, value, direction, price = transfers[-1]
    cutoff = t - params["flow_window_minutes"] * 60_000
    inflow = outflow = 0.0
    for ts, v, d, _ in transfers[-lookback:]:
        if ts > cutoff:
            if d == "to_exchange":
                inflow = inflow + v
            else:
                outflow = outflow + v
    total_flow = inflow + outflow
    net = (inflow - outflow) / total_flow * 100 if total_flow > 0 else 0.0
    whale = params["whale_threshold_btc"] if chain == "btc" else params["whale_threshold_eth"]
    thr = params["exchange_flow_threshold_percent"]
    if value >= whale:
        action = SELL if direction == "to_exchange" else BUY
        confidence = min(CAP, 0.65 + 0.30 * min(1.0, (value / whale - 1) / 9))
        trigger = "whale"
    elif total_flow > 0 and (net >= thr or net <= -thr):
        action = SELL if net >= thr else BUY
        confidence = 0.60 if thr >= 100 else min(CAP, 0.60 + 0.35 * min(1.0, (abs(net) - thr) / (100 - thr)))
        trigger = "exchange_flow"
    else:
        return None
    if price is None:
        return NO_PRICE
    return (action, confidence, price, price,
            {"value": value, "net_flow_percent": net, "inflow": inflow, "outflow": outflow},
            {"trigger": trigger})


# --- microstructure strategies (docs/STRATEGIES.md) ----------------------------------------------

def _excess_confidence(value, threshold, base):
    """``min(cap, base + (cap − base) · min(1, (|value| − |t|) / |t|))``."""
    t = abs(threshold)
    return min(CAP, base + (CAP - base) * min(1, (abs(value) - t) / t))


def microprice(bids, asks, params):
    """``bids``/``asks``: lists of (price, qty), best first."""
    if not bids or not asks:
        return None
    top_levels = int(params["top_levels"])
    Qb = total(q for _, q in bids[:top_levels])
    Qa = total(q for _, q in asks[:top_levels])
    if Qb + Qa < params["min_total_volume"] or Qb + Qa == 0:
        return None
    bid, ask = bids[0][0], asks[0][0]
    mid = (bid + ask) / 2
    if mid <= 0:  # decision: cannot happen after decoding
        return None
    spread_bps = (ask - bid) / mid * 10_000
    if spread_bps > params["max_spread_bps"]:
        return None
    micro = (ask * Qb + bid * Qa) / (Qb + Qa)
    deviation = (micro - mid) / mid * 10_000
    if deviation > params["buy_threshold_bps"]:
        action, threshold, price = BUY, params["buy_threshold_bps"], bid
    elif deviation < params["sell_threshold_bps"]:
        action, threshold, price = SELL, params["sell_threshold_bps"], ask
    else:
        return None
    confidence = _excess_confidence(deviation, threshold, params["base_confidence"])
    indicators = {"microprice": micro, "deviation_bps": deviation,
                  "imbalance": (Qb - Qa) / (Qb + Qa), "spread_bps": spread_bps,
                  "bid_volume": Qb, "ask_volume": Qa}
    return action, confidence, price, mid, indicators, {"top_bid": bid, "top_ask": ask}


OFI_HISTORY = 256


def ofi_contribution(prev, cur):
    """Cont–Kukanov–Stoikov ``e_n`` of two best-level snapshots ``(t, bid, q_bid, ask, q_ask)``."""
    _, pb, qb_prev, pa, qa_prev = prev
    _, b, qb, a, qa = cur
    e = 0.0
    if b >= pb:
        e += qb
    if b <= pb:
        e -= qb_prev
    if a <= pa:
        e -= qa
    if a >= pa:
        e += qa_prev
    return e


def order_flow_imbalance(snapshots, params):
    """``snapshots``: the symbol's judged best-level snapshots ``(t, bid, q_bid, ask, q_ask)``,
    oldest first, the current one last."""
    contributions = [(cur[0], ofi_contribution(prev, cur), (cur[2] + cur[4]) / 2)
                     for prev, cur in zip(snapshots, snapshots[1:])][-OFI_HISTORY:]
    t_now, bid, _, ask, _ = snapshots[-1]
    window_ms = params["window_seconds"] * 1000
    W = [c for c in contributions if not t_now - c[0] > window_ms]
    if len(W) < int(params["min_updates"]):
        return None
    depth = total(c[2] for c in W)
    if depth <= 0:
        return None
    ofi = total(c[1] for c in W)
    mean_depth = depth / len(W)
    normalized = ofi / mean_depth
    if normalized > params["buy_threshold"]:
        action, threshold, price = BUY, params["buy_threshold"], bid
    elif normalized < params["sell_threshold"]:
        action, threshold, price = SELL, params["sell_threshold"], ask
    else:
        return None
    confidence = _excess_confidence(normalized, threshold, params["base_confidence"])
    earliest = min([t_now] + [c[0] for c in W])
    indicators = {"ofi": ofi, "ofi_normalized": normalized, "mean_depth": mean_depth,
                  "updates": len(W), "span_seconds": (t_now - earliest) / 1000}
    return action, confidence, price, (bid + ask) / 2, indicators, {"top_bid": bid, "top_ask": ask}


def trade_flow_imbalance(history, params):
    """``history``: dict trades ``{"E", "p", "q", "m"}`` oldest first, the current one last."""
    current = history[-1]
    window = history[-int(params["max_window_trades"]):]
    window_ms = params["window_seconds"] * 1000
    W = [t for t in window if not current["E"] - t["E"] > window_ms]
    buyer = total(t["q"] for t in W if not t["m"])
    seller = total(t["q"] for t in W if t["m"])
    volume = buyer + seller
    if len(W) < int(params["min_trades"]) or volume < params["min_volume"] or volume == 0:
        return None
    imbalance = (buyer - seller) / volume
    bt, st = params["buy_threshold"], params["sell_threshold"]
    if imbalance > bt and abs(bt) != 1:
        action, threshold = BUY, bt
    elif imbalance < st and abs(st) != 1:
        action, threshold = SELL, st
    else:
        return None
    base = params["base_confidence"]
    confidence = min(CAP, base + (abs(imbalance) - abs(threshold)) / (1 - abs(threshold))
                     * (CAP - base))
    earliest = min([current["E"]] + [t["E"] for t in W])
    indicators = {"imbalance": imbalance, "buy_volume": buyer, "sell_volume": seller,
                  "window_trades": len(W), "span_seconds": (current["E"] - earliest) / 1000}
    return action, confidence, current["p"], current["p"], indicators, {}
