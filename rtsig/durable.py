"""Durable input (``NATS_CONSUMER_STREAM``): a JetStream stream, a durable pull consumer per
shard, acknowledgements only for what was judged, and a history rebuild after a restart.

The control plane (stream, consumers, their state) goes through nats-py: a handful of requests at
start. The messages themselves flow through the ingest's own subscriber in pull mode
(:class:`rtsig.natsproto.PullConsumer`), framed and decoded like core NATS messages.

* **Acknowledge after judging.** The consumer acknowledges "all up to" a message. The ingest
  records, for every decoded batch, the ring heads after routing it and the reply subject of its
  last message; once every worker's *published* cursor has passed those heads (its events
  judged and a NATS flush confirmed their signals were sent) and no worker holds signals for a
  lost connection, that message is acknowledged. A crash loses no input: what was not
  acknowledged is delivered again.
* **Resume at the floor.** JetStream would go on delivering after the last message it *sent*
  and redeliver the unacknowledged ones only after ``ack_wait``; the ingest would skip those as
  already seen without having judged them. So a consumer whose deliveries ran ahead of its
  acknowledgements is re-created at the first unacknowledged message.
* **Skip what was judged.** A delivery whose stream sequence is not above the highest already
  decoded (a redelivery after a reconnect, while the first delivery is still in the backlog) is
  skipped and counted (``INPUT_REDELIVERED``).
* **Rebuild before resuming.** After a restart the store is empty: history windows and
  cool-downs would start from nothing. So the ingest first reads the stream from
  ``NATS_CONSUMER_REBUILD_SECONDS`` before the consumer's acknowledgement floor up to that floor
  through a short-lived consumer, and routes it as *silent* events (judged, never published,
  :data:`rtsig.layout.CURSOR_SILENT`); then it resumes the durable consumer at the first
  unacknowledged message. Signals made again for delivered-but-unacknowledged messages carry the
  same ``signal_id`` (derived from the input) and ``Nats-Msg-Id``, so a JetStream stream on the
  signal subject drops them.
"""

from __future__ import annotations

import collections
import datetime
import logging
from dataclasses import dataclass

import numpy as np

from rtsig.layout import CURSOR_HEAD, CURSOR_PUBLISHED, CURSOR_SILENT
from rtsig.natsframe import META_REPLY_END, META_REPLY_START, stream_sequences
from rtsig.natsproto import PullConsumer
from rtsig.settings import Settings

log = logging.getLogger(__name__)

MAX_ACK_PENDING = 262_144
"""Messages delivered and not yet acknowledged, at most (the default 1,000 would throttle)."""
ACK_WAIT_S = 60.0
"""A delivery not acknowledged for this long is delivered again (the backlog may be deep)."""


def input_subjects(settings: Settings) -> list[str]:
    """The subjects the stream captures and the consumers read: the input, and the futures input."""
    futures = settings.nats_futures_topic
    return [settings.nats_consumer_topic] + ([futures] if futures else [])


def durable_name(settings: Settings) -> str:
    """``<NATS_CONSUMER_GROUP>-<shard index>``: one durable consumer per shard."""
    return f"{settings.nats_consumer_group}-{settings.shard_index}"


@dataclass(frozen=True)
class ResumePoint:
    """Where the durable consumer stands: its acknowledgement floor (stream sequence) and when."""

    floor_seq: int
    floor_time: datetime.datetime | None


class StreamNotFound(RuntimeError):
    pass


async def prepare(nc, settings: Settings) -> ResumePoint:
    """Make sure the stream (if allowed) and the durable consumer exist; where it stands."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
    from nats.js.errors import NotFoundError

    js = nc.jetstream()
    stream = settings.nats_consumer_stream
    try:
        await js.stream_info(stream)
    except NotFoundError:
        if not settings.nats_consumer_stream_create:
            raise StreamNotFound(f"JetStream stream {stream} does not exist: create it, or set "
                                 "NATS_CONSUMER_STREAM_CREATE=true") from None
        await js.add_stream(StreamConfig(name=stream, subjects=input_subjects(settings),
                                         max_age=settings.nats_consumer_stream_max_age_seconds))
        log.info("created JetStream stream %s on %s", stream, ", ".join(input_subjects(settings)))
    name = durable_name(settings)
    config = ConsumerConfig(durable_name=name, ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL,
                            filter_subjects=input_subjects(settings), max_ack_pending=MAX_ACK_PENDING,
                            ack_wait=ACK_WAIT_S, max_deliver=-1)
    try:
        info = await js.consumer_info(stream, name)
    except NotFoundError:
        await js.add_consumer(stream, config)
        log.info("created durable consumer %s on stream %s", name, stream)
        return ResumePoint(0, None)
    floor_seq = int(info.ack_floor.stream_seq) if info.ack_floor else 0
    point = ResumePoint(floor_seq, info.ack_floor.last_active if info.ack_floor else None)
    delivered = int(info.delivered.stream_seq) if info.delivered else 0
    if delivered > floor_seq:  # delivered ahead of the acknowledgements: start again at the floor
        await js.delete_consumer(stream, name)
        if floor_seq:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, floor_seq + 1
        await js.add_consumer(stream, config)
        log.info("consumer %s resumes at stream sequence %d (%d delivered, not acknowledged)",
                 name, floor_seq + 1, delivered - floor_seq)
    return point


async def rebuild_consumer(nc, settings: Settings, since: datetime.datetime) -> str:
    """A short-lived consumer that delivers the stream from ``since`` on (no acknowledgements)."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    info = await nc.jetstream().add_consumer(settings.nats_consumer_stream, ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since, ack_policy=AckPolicy.NONE,
        filter_subjects=input_subjects(settings), inactive_threshold=60.0, mem_storage=True))
    return info.name


async def delete_consumer(nc, settings: Settings, name: str) -> None:
    try:
        await nc.jetstream().delete_consumer(settings.nats_consumer_stream, name)
    except Exception as exc:  # noqa: BLE001 - it expires by itself (inactive_threshold)
        log.debug("could not delete consumer %s: %s", name, exc)


def pull_for(settings: Settings, consumer: str) -> PullConsumer:
    assert settings.nats_consumer_stream is not None  # JetStream mode only
    return PullConsumer(settings.nats_consumer_stream, consumer)


class AckTracker:
    """Decides which deliveries may be skipped and which may be acknowledged."""

    def __init__(self) -> None:
        self.last_seq = 0
        """The highest stream sequence decoded so far."""
        self._batches: collections.deque[tuple[np.ndarray, bytes]] = collections.deque()
        self._seqs = np.zeros(4096, dtype=np.int64)
        self.acked = 0

    def sequences(self, buf: np.ndarray, meta: np.ndarray) -> np.ndarray:
        n = meta.shape[0]
        if self._seqs.size < n:
            self._seqs = np.zeros(n, dtype=np.int64)
        out = self._seqs[:n]
        stream_sequences(buf, meta, out)
        return out

    def split(self, seqs: np.ndarray) -> tuple[int, int]:
        """``(redelivered, fresh)``: the leading run of frames already decoded, else the leading
        run of new ones (the caller skips the first, decodes the second, and comes back)."""
        n = seqs.size
        if n == 0:
            return 0, 0
        running = np.maximum.accumulate(np.concatenate(([self.last_seq], seqs)))[:-1]
        fresh = (seqs > running) | (seqs < 0)
        first = bool(fresh[0])
        change = np.flatnonzero(fresh != first)
        run = int(change[0]) if change.size else n
        return (0, run) if first else (run, 0)

    def decoded(self, seqs: np.ndarray, buf: np.ndarray, meta: np.ndarray, heads: np.ndarray) -> None:
        """``seqs`` were decoded and routed; the rings' heads are now ``heads``."""
        if seqs.size == 0:
            return
        self.last_seq = max(self.last_seq, int(seqs.max()))
        last = meta[-1]
        reply = bytes(buf[last[META_REPLY_START]:last[META_REPLY_END]])
        if reply:
            self._batches.append((heads.copy(), reply))

    def ready(self, cursors: np.ndarray, held_signals: int) -> bytes | None:
        """The reply subject to acknowledge now (all up to it), or None."""
        if held_signals:
            return None
        reply = None
        tails = cursors[:, CURSOR_PUBLISHED]
        while self._batches and bool(np.all(tails >= self._batches[0][0])):
            reply = self._batches.popleft()[1]
            self.acked += 1
        return reply

    @property
    def pending(self) -> int:
        return len(self._batches)


def mark_silent(cursors: np.ndarray) -> None:
    """Everything routed so far is history being rebuilt: judge it, publish nothing."""
    cursors[:, CURSOR_SILENT] = cursors[:, CURSOR_HEAD]
