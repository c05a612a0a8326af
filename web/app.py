"""The Falcon app factory: every route of :data:`ROUTES`, parsed and answered the same way.

A route's path, query and body are validated against its types (:mod:`web.types`, via msgspec)
before its handler runs: 404 for an unknown strategy or a symbol that cannot exist, 400 for a
malformed or unknown query parameter or a body that is not a JSON object, 422 with one message
per bad body field (and per bad parameter of a change). Handlers return a :class:`~web.route.Reply`
or raise; every error leaves as the envelope (or ``{"error"}`` on the market routes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import falcon
import msgspec

from web import config_routes, health_routes, market_routes
from web.deps import WebDeps
from web.envelope import ApiError, bad_request, from_exception, invalid, not_found, write, write_error
from web.openapi import DOCS_HTML, SWAGGER_FILES, document, swagger_dir
from web.route import Call, Route
from web.types import PARAMETERS, ChangeRequest

ROUTES: tuple[Route, ...] = config_routes.ROUTES + market_routes.ROUTES + health_routes.ROUTES
MAX_BODY_BYTES = 64 * 1024
BARE_PREFIX = "/api/v1/metrics"
"""Routes under it answer bare objects and ``{"error": …}`` (the seed's shapes), not the envelope."""
_ENCODER = msgspec.json.Encoder()


def problem(exc: msgspec.ValidationError) -> str:
    """msgspec's message without its location suffix (the field is named by the caller)."""
    text = str(exc)
    return text.split(" - at `$", 1)[0]


def convert_fields(values: Mapping[str, Any], struct: type[msgspec.Struct], strict: bool = True,
                   unknown: str = "unknown field") -> tuple[Any, dict[str, str]]:
    """``(instance, {})`` or ``(None, {field: problem, …})``: every field checked on its own, so
    that each bad one gets its own message (msgspec stops at the first)."""
    errors: dict[str, str] = {}
    fields = {f.name: f for f in msgspec.structs.fields(struct)}
    values = dict(values)
    for name in values:
        if name not in fields:
            errors[name] = unknown
    for name, f in fields.items():
        if name not in values:
            if f.required:
                errors[name] = "required"
            continue
        try:
            msgspec.convert(values[name], f.type, strict=strict)
        except msgspec.ValidationError as exc:
            value = values[name]
            # JSON Schema's "integer" is any number without a fraction (525.0 is one)
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
                try:
                    msgspec.convert(int(value), f.type, strict=strict)
                    values[name] = int(value)
                    continue
                except msgspec.ValidationError:
                    pass
            errors[name] = problem(exc)
    if errors:
        return None, errors
    return msgspec.convert(values, struct, strict=strict), {}


def reject_unknown_query(req: falcon.Request, known) -> None:
    """400 naming every query parameter the route does not know (never silently ignored)."""
    unknown = sorted(name for name in req.params if name not in known)
    if unknown:
        raise bad_request(f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                          + ", ".join(repr(name) for name in unknown),
                          {name: "unknown query parameter" for name in unknown})


def parse(route: Route, req: falcon.Request, path: dict) -> Call:
    query_fields = {f.name for f in msgspec.structs.fields(route.query)}
    reject_unknown_query(req, query_fields)
    path_values = None
    if route.path_params is not None:
        path_values, errors = convert_fields(path, route.path_params)
        if errors:
            name, why = next(iter(errors.items()))
            raise not_found(f"unknown {name.replace('_', ' ')} {path.get(name)!r}: {why}")
    query, errors = convert_fields(req.params, route.query, strict=False)
    if errors:
        raise ApiError(route.query_status, "VALIDATION_ERROR",
                       f"{len(errors)} invalid query parameter(s): {', '.join(errors)}", errors)
    body = parse_body(route, req, path_values) if route.body else None
    return Call(path_values, query, body, dict(req.headers), req.remote_addr or "")


def parse_body(route: Route, req: falcon.Request, path_values) -> Any:
    if req.content_length and req.content_length > MAX_BODY_BYTES:
        raise bad_request(f"request body larger than {MAX_BODY_BYTES} bytes")
    raw = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    if not raw:
        raise bad_request("a JSON object body is required")
    if len(raw) > MAX_BODY_BYTES:
        raise bad_request(f"request body larger than {MAX_BODY_BYTES} bytes")
    try:
        data = msgspec.json.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise bad_request("the body is not valid JSON", {"body": str(exc)}) from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    assert route.body is not None  # parse_body runs only for routes with a body
    body, errors = convert_fields(data, route.body)
    if route.body is ChangeRequest and isinstance(data.get("parameters"), dict) and path_values is not None:
        errors.pop("parameters", None)
        checked, parameter_problems = parameters_of(path_values.strategy_id, data["parameters"])
        errors.update(parameter_problems)
        if not errors:
            body, errors = convert_fields({**data, "parameters": checked}, route.body)
    if errors:
        raise invalid(f"{len(errors)} invalid field(s)", errors)
    return body


def parameters_of(strategy_id: str, parameters: Mapping[str, Any]) -> tuple[dict, dict[str, str]]:
    """``(the parameters as their types, one message per bad parameter)`` of a change, checked
    against the strategy's own types (:data:`web.types.PARAMETERS`)."""
    if not parameters:
        return {}, {"parameters": "a non-empty object of parameter names and values"}
    known = ", ".join(f.name for f in msgspec.structs.fields(PARAMETERS[strategy_id]))
    checked, errors = convert_fields(parameters, PARAMETERS[strategy_id],
                                     unknown=f"not a parameter of {strategy_id}; known: {known}")
    if errors:
        return {}, errors
    return {k: v for k, v in msgspec.structs.asdict(checked).items() if v is not msgspec.UNSET}, {}


class RouteResource:
    """The responders of one path; Falcon answers 405 for the methods it has none for."""

    def __init__(self, deps: WebDeps, routes: dict[str, Route]) -> None:
        self.deps = deps
        self.routes = routes
        for method in routes:
            setattr(self, f"on_{method.lower()}", self._respond)

    def _respond(self, req: falcon.Request, resp: falcon.Response, **path) -> None:
        route = self.routes[req.method]
        reply = route.handler(self.deps, parse(route, req, path))
        if route.response is not None and route.enveloped:
            write(resp, reply.data, reply.status, reply.metadata)
        elif reply.raw is not None:
            resp.status = reply.status
            resp.content_type = reply.content_type
            resp.data = reply.raw if isinstance(reply.raw, bytes) else reply.raw.encode()
        else:
            resp.status = reply.status
            resp.content_type = falcon.MEDIA_JSON
            resp.data = _ENCODER.encode(reply.data)


class OpenApiResource:
    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.body = msgspec.json.encode(document(routes))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        reject_unknown_query(req, ())
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body


class DocsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        reject_unknown_query(req, ())
        resp.content_type = falcon.MEDIA_HTML
        resp.text = DOCS_HTML

    def on_get_static(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name not in SWAGGER_FILES:
            raise not_found(f"no such file {name!r}")
        resp.data = (swagger_dir() / name).read_bytes()
        resp.content_type = {"css": "text/css", "js": "application/javascript",
                             "png": "image/png"}[name.rsplit(".", 1)[1]]
        resp.cache_control = ["public", "max-age=86400"]


def _handle_error(req: falcon.Request, resp: falcon.Response, exc: Exception, params) -> None:
    err = from_exception(exc)
    if isinstance(exc, falcon.HTTPError) and exc.headers:
        err.headers = {**dict(exc.headers), **err.headers}
    write_error(resp, err, bare=req.path.startswith(BARE_PREFIX))


def create_app(deps: WebDeps, routes: tuple[Route, ...] = ROUTES) -> falcon.App:
    """The WSGI app over ``deps``; :mod:`web.server` builds the production deps."""
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.keep_blank_qs_values = True  # ?symbol= is a value to check, not nothing
    by_path: dict[str, dict[str, Route]] = {}
    for route in routes:
        by_path.setdefault(route.path, {})[route.method] = route
    for path, methods in by_path.items():
        app.add_route(path, RouteResource(deps, methods))
    app.add_route("/openapi.json", OpenApiResource(routes))
    docs = DocsResource()
    app.add_route("/docs", docs)
    app.add_route("/docs/static/{name}", docs, suffix="static")
    app.add_error_handler(Exception, _handle_error)
    app.add_error_handler(ApiError, _handle_error)
    app.add_error_handler(falcon.HTTPError, _handle_error)
    return app
