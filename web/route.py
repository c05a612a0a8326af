"""Route definitions: what each operation takes and answers, as types of :mod:`web.types`.

A :class:`Route` names its handler, the Structs of its path, query and body, the type of its
answer and every status it can answer, once; the app (:mod:`web.app`) validates requests with
those types and the OpenAPI generator (:mod:`web.openapi`) describes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from msgspec import Struct

from web.types import NoQuery


@dataclass(frozen=True)
class Route:
    """One operation: method + path, its request types, its handler and its statuses."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    handler: Callable
    response: Any
    """The type of the answer (of the envelope's ``data`` when ``enveloped``); None: not JSON."""
    path_params: type[Struct] | None = None
    query: type[Struct] = NoQuery
    query_status: int = 400
    """The status of a bad query parameter: 422 where the query carries what a body would (DELETE)."""
    body: type[Struct] | None = None
    success: tuple[int, ...] = (200,)
    errors: tuple[int, ...] = ()
    mutating: bool = False
    content_type: str = "application/json"
    enveloped: bool = True
    """False: the answer is ``response`` itself, errors ``{"error": {…}}`` (the market metrics,
    as the seed's examples read them)."""
    per_strategy: bool = False
    """Documented once per strategy (its body's ``parameters`` are that strategy's)."""


@dataclass
class Call:
    """A parsed request: path, query and body already validated against the route's types."""

    path: Any
    query: Any
    body: Any
    headers: dict
    remote: str = ""
    """The client's address (for the log of a change)."""


@dataclass
class Reply:
    """A handler's answer: ``data`` (a Struct, list or dict) or a raw body."""

    data: Any = None
    status: int = 200
    metadata: dict | None = None
    raw: bytes | str | None = None
    content_type: str = "application/json"
