"""The ingest's receive backlog: bytes read from NATS and the ``MSG`` frames found in them.

Measured on the 2-core machine: nats-py costs ~5 µs of Python per received message (protocol
parser, ``Msg`` object, queue, callback), more than the whole per-message budget. So the ingest
reads the socket into one growing numpy buffer and :func:`scan_frames` finds every complete frame
of a read in one jitted call; the payload spans go straight to the decoder — no Python object per
message.

Every read is framed as soon as it arrives, whatever the decoder's backlog (the span arrays grow
with it), so control lines — PING, PONG, INFO, -ERR — are always seen at once: a connection whose
consumer is busy is never mistaken for a dead one, and a lost connection leaves every complete
frame it delivered in the backlog. Only two things are ever dropped, and both are counted by the
owner: a frame cut off by a lost connection (:meth:`Backlog.drop_partial`) and frames that arrive
while the backlog holds more than its byte limit (:meth:`Backlog.discard_last`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

CTL_NONE, CTL_PING, CTL_PONG, CTL_INFO, CTL_OK, CTL_ERR, CTL_UNKNOWN, CTL_STATUS = 0, 1, 2, 3, 4, 5, 6, 7
_CR, _LF, _SPACE, _TAB = 13, 10, 32, 9
META_REPLY_START, META_REPLY_END, META_SID, META_SUBJECT_START, META_SUBJECT_END = 0, 1, 2, 3, 4
META_WIDTH = 5
"""Per frame: the reply subject's span (0, 0 without one: JetStream acks go there), the sid, and
the subject's span (a JetStream delivery carries the subject it was published on)."""
_STATUS_PREFIX = b"NATS/1.0 "


@njit(cache=True)
def _upper(c):
    return c - 32 if 97 <= c <= 122 else c


@njit(cache=True, inline="always")
def _digits(buf, s, e):
    """The decimal number in ``buf[s:e]``; -1 if it is not one."""
    if s >= e:
        return -1
    value = 0
    for k in range(s, e):
        d = buf[k] - 48
        if d < 0 or d > 9:
            return -1
        value = value * 10 + d
    return value


@njit(cache=True)
def scan_frames(buf, pos, end, starts, ends, meta, first, max_msgs):
    """Frame messages in ``buf[pos:end]``: ``(pos, n, control, control_start, control_end, resume)``.

    Complete ``MSG <subject> <sid> [reply] <size>`` and ``HMSG <subject> <sid> [reply] <header
    size> <total size>`` frames are recorded as payload spans in ``starts/ends[first:first+n]``
    (at most ``max_msgs``; for HMSG the payload after the headers) with their reply span and sid
    in ``meta``. Scanning stops at an incomplete frame (``pos`` is where it starts), when the
    span arrays are full, or at a control line, returned as its kind and span (``pos`` is that
    line's start, ``resume`` where scanning goes on). A header-only HMSG whose headers carry a
    status (``NATS/1.0 408 Request Timeout``: JetStream's answers to a pull) is ``CTL_STATUS``
    with the headers' span. A line that is not NATS protocol returns ``CTL_UNKNOWN``.
    """
    n = 0
    tok_s = np.empty(6, dtype=np.int64)
    tok_e = np.empty(6, dtype=np.int64)
    status = np.frombuffer(_STATUS_PREFIX, dtype=np.uint8)
    while pos < end and n < max_msgs:
        nl = pos
        while nl + 1 < end and not (buf[nl] == _CR and buf[nl + 1] == _LF):
            nl += 1
        if nl + 1 >= end:
            break  # the line is not complete yet
        c0 = _upper(buf[pos])
        op = 0  # 3: MSG, 4: HMSG
        if c0 == 77 and nl - pos > 4 and _upper(buf[pos + 1]) == 83 and _upper(buf[pos + 2]) == 71 \
                and (buf[pos + 3] == _SPACE or buf[pos + 3] == _TAB):
            op = 3
        elif c0 == 72 and nl - pos > 5 and _upper(buf[pos + 1]) == 77 and _upper(buf[pos + 2]) == 83 \
                and _upper(buf[pos + 3]) == 71 and (buf[pos + 4] == _SPACE or buf[pos + 4] == _TAB):
            op = 4
        if op:
            ntok = 0
            k = pos + op
            while k < nl and ntok < 6:
                while k < nl and (buf[k] == _SPACE or buf[k] == _TAB):
                    k += 1
                if k >= nl:
                    break
                tok_s[ntok] = k
                while k < nl and buf[k] != _SPACE and buf[k] != _TAB:
                    k += 1
                tok_e[ntok] = k
                ntok += 1
            with_reply = ntok == op + 1
            if ntok != op and not with_reply:
                return pos, n, CTL_UNKNOWN, pos, nl, nl + 2
            total = _digits(buf, tok_s[ntok - 1], tok_e[ntok - 1])
            header = _digits(buf, tok_s[ntok - 2], tok_e[ntok - 2]) if op == 4 else 0
            if total < 0 or header < 0 or header > total:
                return pos, n, CTL_UNKNOWN, pos, nl, nl + 2
            body = nl + 2
            if body + total + 2 > end:
                break  # the payload is not complete yet
            if op == 4 and not with_reply and header >= 12 and total == header:
                is_status = True
                for j in range(status.size):
                    if buf[body + j] != status[j]:
                        is_status = False
                        break
                if is_status:
                    return pos, n, CTL_STATUS, body, body + header, body + total + 2
            starts[first + n] = body + header
            ends[first + n] = body + total
            if with_reply:
                meta[first + n, META_REPLY_START] = tok_s[2]
                meta[first + n, META_REPLY_END] = tok_e[2]
            else:
                meta[first + n, META_REPLY_START] = 0
                meta[first + n, META_REPLY_END] = 0
            meta[first + n, META_SID] = _digits(buf, tok_s[1], tok_e[1])
            meta[first + n, META_SUBJECT_START] = tok_s[0]
            meta[first + n, META_SUBJECT_END] = tok_e[0]
            n += 1
            pos = body + total + 2
            continue
        kind = CTL_UNKNOWN
        if c0 == 80 and nl - pos >= 4:
            c3 = _upper(buf[pos + 3])
            if _upper(buf[pos + 1]) == 73 and c3 == 71:
                kind = CTL_PING
            elif _upper(buf[pos + 1]) == 79 and c3 == 71:
                kind = CTL_PONG
        elif c0 == 73 and nl - pos >= 4 and _upper(buf[pos + 1]) == 78:
            kind = CTL_INFO
        elif c0 == 43:
            kind = CTL_OK
        elif c0 == 45:
            kind = CTL_ERR
        return pos, n, kind, pos, nl, nl + 2
    return pos, n, CTL_NONE, 0, 0, pos


@njit(cache=True)
def stream_sequences(buf, meta, out):
    """The JetStream stream sequence of each frame, from its ack subject; -1 without one.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`` (9
    tokens), or with ``<domain>.<account hash>`` after ``ACK`` and a random token at the end (12).
    """
    for f in range(meta.shape[0]):
        s, e = meta[f, META_REPLY_START], meta[f, META_REPLY_END]
        out[f] = -1
        if e <= s:
            continue
        tokens = 1
        for k in range(s, e):
            if buf[k] == 46:
                tokens += 1
        want = 5 if tokens == 9 else (7 if tokens >= 11 else -1)
        if want < 0:
            continue
        t = 0
        k = s
        while t < want and k < e:
            if buf[k] == 46:
                t += 1
            k += 1
        value = 0
        while k < e and buf[k] != 46:
            value = value * 10 + (buf[k] - 48)
            k += 1
        out[f] = value


@njit(cache=True)
def classify_subjects(buf, meta, names, offsets, out):
    """``out[f]`` = the index of frame ``f``'s subject among ``names`` (subjects packed end to
    end, ``offsets[k]:offsets[k+1]`` the k-th), or -1 if it is none of them."""
    for f in range(meta.shape[0]):
        s, e = meta[f, META_SUBJECT_START], meta[f, META_SUBJECT_END]
        out[f] = -1
        for k in range(offsets.size - 1):
            a, b = offsets[k], offsets[k + 1]
            if b - a != e - s:
                continue
            same = True
            for j in range(b - a):
                if buf[s + j] != names[a + j]:
                    same = False
                    break
            if same:
                out[f] = k
                break


class SubjectTable:
    """The subjects one subscriber reads, packed for :func:`classify_subjects`."""

    def __init__(self, subjects: list[str]) -> None:
        raw = [x.encode() for x in subjects]
        self.names = np.frombuffer(b"".join(raw) or b"\0", dtype=np.uint8).copy()
        self.offsets = np.cumsum([0] + [len(r) for r in raw]).astype(np.int64)
        self._out = np.zeros(4096, dtype=np.int64)

    def classify(self, buf: np.ndarray, meta: np.ndarray) -> np.ndarray:
        n = meta.shape[0]
        if self._out.size < n:
            self._out = np.zeros(n, dtype=np.int64)
        out = self._out[:n]
        classify_subjects(buf, meta, self.names, self.offsets, out)
        return out


class Backlog:
    """Received bytes and the complete frames in them, until the decoder is done with them.

    ``data[head:tail]`` is kept; ``scan_pos`` is where framing resumes; frames
    ``first..count-1`` of the span arrays are framed and not yet consumed. Consuming moves
    ``first`` (no copy); the arrays are compacted only when they run out of room.
    """

    def __init__(self, capacity_bytes: int = 8 << 20, spans: int = 4096,
                 limit_bytes: int = 1 << 30) -> None:
        self.data = np.zeros(capacity_bytes, dtype=np.uint8)
        self.head = 0
        self.tail = 0
        self.scan_pos = 0
        self.starts = np.zeros(spans, dtype=np.int64)
        self.ends = np.zeros(spans, dtype=np.int64)
        self.receipt_ns = np.zeros(spans, dtype=np.int64)
        self.meta = np.zeros((spans, META_WIDTH), dtype=np.int64)
        self.first = 0
        self.count = 0
        self.limit_bytes = limit_bytes

    @property
    def framed(self) -> int:
        """Frames found and not yet consumed."""
        return self.count - self.first

    @property
    def pending_bytes(self) -> int:
        return self.tail - self.head

    @property
    def over_limit(self) -> bool:
        return self.pending_bytes >= self.limit_bytes

    def append(self, chunk: bytes) -> None:
        """Add received bytes, compacting or growing the buffer if they do not fit."""
        n = len(chunk)
        if self.tail + n > self.data.size and self.head:
            self._compact_bytes()
        if self.tail + n > self.data.size:
            grown = np.zeros(max(self.data.size * 2, self.tail + n), dtype=np.uint8)
            grown[:self.tail] = self.data[:self.tail]
            self.data = grown
        self.data[self.tail:self.tail + n] = np.frombuffer(chunk, dtype=np.uint8)
        self.tail += n

    def frame(self, receipt_ns: int) -> tuple[int, bytes]:
        """Frame until the end of the bytes or a control line: ``(control kind, its line)``."""
        while True:
            if self.count == self.starts.size:
                self._make_span_room()
            room = self.starts.size - self.count
            pos, n, ctl, cs, ce, resume = scan_frames(self.data, self.scan_pos, self.tail, self.starts,
                                                      self.ends, self.meta, self.count, room)
            if n:
                self.receipt_ns[self.count:self.count + n] = receipt_ns
                self.count += n
            self.scan_pos = int(pos)
            if ctl != CTL_NONE:
                self.scan_pos = int(resume)
                if self.framed == 0:
                    self.head = self.scan_pos  # control lines between frames need no keeping
                return int(ctl), bytes(self.data[cs:ce])
            if n < room:
                return CTL_NONE, b""

    def spans(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(starts, ends, receipt_ns)`` of the next ``n`` unconsumed frames (views)."""
        k = self.first
        return self.starts[k:k + n], self.ends[k:k + n], self.receipt_ns[k:k + n]

    def frame_meta(self, n: int) -> np.ndarray:
        """Reply spans and sids of the next ``n`` unconsumed frames (a view; META_* columns)."""
        return self.meta[self.first:self.first + n]

    def consume(self, n: int) -> None:
        """The next ``n`` frames are finished with: release their bytes."""
        if n <= 0:
            return
        self.first += n
        if self.first >= self.count:
            self.first = self.count = 0
            self.head = self.scan_pos
        else:
            self.head = int(self.starts[self.first])  # its MSG header line is no longer needed
        if self.head > self.data.size // 2:
            self._compact_bytes()

    def drop_partial(self) -> bool:
        """Forget bytes after the last complete line or frame (their connection is gone).

        True when they were the start of a message (the caller counts it as lost).
        """
        partial = bytes(self.data[self.scan_pos:min(self.tail, self.scan_pos + 3)]).upper()
        self.tail = self.scan_pos
        if self.framed == 0:
            self.head = self.scan_pos
        return bool(partial) and b"MSG".startswith(partial)  # only a MSG line starts with M

    def discard_last(self, n: int, pos: int) -> int:
        """Drop the last ``n`` frames, all framed from byte ``pos`` on; returns ``n``.

        A frame still incomplete at the end moves down to ``pos``, so the bytes are freed too.
        """
        partial = self.tail - self.scan_pos
        if partial:
            self.data[pos:pos + partial] = self.data[self.scan_pos:self.tail].copy()
        self.count -= n
        self.scan_pos, self.tail = pos, pos + partial
        if self.framed == 0:
            self.first = self.count = 0
            self.head = self.scan_pos
        return n

    def _make_span_room(self) -> None:
        live = self.count - self.first
        if self.first:  # move the unconsumed spans down
            for a in (self.starts, self.ends, self.receipt_ns, self.meta):
                a[:live] = a[self.first:self.count]
            self.first, self.count = 0, live
        if self.count > self.starts.size // 2:
            size = self.starts.size * 2
            self.starts, self.ends, self.receipt_ns, self.meta = (
                np.concatenate([a, np.zeros((size - a.shape[0],) + a.shape[1:], dtype=np.int64)])
                for a in (self.starts, self.ends, self.receipt_ns, self.meta))

    def _compact_bytes(self) -> None:
        shift = self.head
        if not shift:
            return
        remaining = self.tail - self.head
        self.data[:remaining] = self.data[self.head:self.tail]
        self.head, self.tail = 0, remaining
        self.scan_pos -= shift
        self.starts[self.first:self.count] -= shift
        self.ends[self.first:self.count] -= shift
        replies = self.meta[self.first:self.count, :META_REPLY_END + 1]
        replies[replies[:, META_REPLY_END] > 0] -= shift
        self.meta[self.first:self.count, META_SUBJECT_START:META_SUBJECT_END + 1] -= shift
