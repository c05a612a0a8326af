"""Route and parameter definitions: what the app parses and what ``/openapi.json`` documents.

A :class:`Route` names its handler, its path/query/body fields and its responses once; the app
(:mod:`web.app`) validates requests with these same :class:`Field` objects and the OpenAPI
generator (:mod:`web.openapi`) describes them, so the documentation cannot drift from behaviour.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from web.envelope import ApiError

JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool,
              "object": dict}


_OPTIONAL_KEYWORDS = (("minimum", "minimum"), ("maximum", "maximum"), ("max_length", "maxLength"),
                      ("pattern", "pattern"), ("default", "default"), ("example", "example"))
"""Field attribute → OpenAPI schema keyword, written only when set."""


@dataclass(frozen=True)
class Field:
    """A path, query or body field with its JSON type and constraints."""

    name: str
    type: str  # string / integer / number / boolean / object
    description: str
    required: bool = False
    default: Any = None
    enum: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    pattern: str | None = None  # a regex the whole value must match (search semantics as in JSON Schema)
    nullable: bool = False
    example: Any = None
    schema_ref: str | None = None  # for objects: a component schema

    def schema(self) -> dict:
        if self.schema_ref:
            out: dict = {"$ref": f"#/components/schemas/{self.schema_ref}"}
        else:
            out = {"type": self.type}
        if self.enum:
            out["enum"] = list(self.enum)
        for attribute, keyword in _OPTIONAL_KEYWORDS:
            value = getattr(self, attribute)
            if value is not None:
                out[keyword] = value
        if "$ref" in out:  # OpenAPI 3.0: no siblings beside a $ref
            out = {"allOf": [out]}
        if self.nullable:
            out["nullable"] = True
        return out

    def parse_text(self, text: str) -> Any:
        """A query or path string as this field's type (400 naming the field if it is not)."""
        value: Any = text
        try:
            if self.type == "integer":
                value = int(text)
            elif self.type == "number":
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError(text)
            elif self.type == "boolean":
                lowered = text.lower()
                if lowered not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                value = lowered in ("true", "1")
        except ValueError:
            raise ApiError(400, "VALIDATION_ERROR", f"bad query parameter {self.name!r}",
                           {self.name: f"expected {self.type}, got {text!r}"}) from None
        return self.check(value, status=400)

    def check(self, value: Any, status: int = 422) -> Any:
        """``value`` if it satisfies the constraints; otherwise an error naming the field."""
        problem = self.problem(value)
        if problem:
            raise ApiError(status, "VALIDATION_ERROR", f"invalid field {self.name!r}",
                           {self.name: problem})
        return value

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None if self.nullable or not self.required else "required"
        expected = JSON_TYPES[self.type]
        if isinstance(value, bool) and self.type != "boolean":
            return f"expected {self.type}, got a boolean"
        if not isinstance(value, expected):
            return f"expected {self.type}, got {type(value).__name__}"
        if self.type == "number" and not math.isfinite(value):
            return "expected a finite number"
        if self.enum and value not in self.enum:
            return f"expected one of {', '.join(map(str, self.enum))}"
        if self.minimum is not None and value < self.minimum:
            return f"expected >= {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"expected <= {self.maximum:g}"
        if self.max_length is not None and len(value) > self.max_length:
            return f"at most {self.max_length} characters"
        if self.pattern is not None and not re.search(self.pattern, value):
            return f"must match {self.pattern}"
        return None


@dataclass(frozen=True)
class Route:
    """One operation: method + path, its fields, its handler and every status it can answer."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    handler: Callable
    response: str | None  # component schema of the envelope's ``data``; None: not enveloped
    path_fields: tuple[Field, ...] = ()
    query: tuple[Field, ...] = ()
    body: tuple[Field, ...] = ()
    success: tuple[int, ...] = (200,)
    errors: tuple[int, ...] = ()
    mutating: bool = False
    content_type: str = "application/json"
    description: str = ""
    extra: dict = field(default_factory=dict)
    enveloped: bool = True
    """False: the response is ``response``'s object itself, errors ``{"error": {…}}`` (the
    market metrics, as the seed's examples read them)."""

    @property
    def body_schema(self) -> dict:
        return {"type": "object",
                "properties": {f.name: {**f.schema(), "description": f.description} for f in self.body},
                "required": [f.name for f in self.body if f.required],
                "additionalProperties": False}


@dataclass
class Call:
    """A parsed request: path, query and body fields already checked against the route."""

    path: dict
    query: dict
    body: dict
    headers: dict
    remote: str = ""
    """The client's address (for the log of a change)."""


@dataclass
class Reply:
    """A handler's answer: enveloped ``data`` (routes with a response schema) or a raw body."""

    data: Any = None
    status: int = 200
    metadata: dict | None = None
    raw: bytes | str | None = None
    content_type: str = "application/json"
