"""The Falcon app factory: every route of :data:`ROUTES`, parsed and answered the same way.

A route's path, query and body fields are checked against its :class:`~web.spec.Route`
definition before its handler runs (400 for malformed input, 404 for an unknown strategy, 422
with one message per bad field); handlers return a :class:`~web.spec.Reply` or raise, and every
error leaves as the envelope with its status.
"""

from __future__ import annotations

import orjson
import falcon

from web import config_routes, health_routes, market_routes
from web.deps import WebDeps
from web.envelope import ApiError, bad_request, from_exception, not_found, write, write_error
from web.openapi import DOCS_HTML, SWAGGER_FILES, document, swagger_dir
from web.spec import Call, Route

ROUTES: tuple[Route, ...] = config_routes.ROUTES + market_routes.ROUTES + health_routes.ROUTES
MAX_BODY_BYTES = 64 * 1024
BARE_PREFIX = "/api/v1/metrics"
"""Routes under it answer bare objects and ``{"error": …}`` (the seed's shapes), not the envelope."""


def reject_unknown_query(req: falcon.Request, known) -> None:
    """400 naming every query parameter the route does not know (never silently ignored)."""
    unknown = sorted(name for name in req.params if name not in known)
    if unknown:
        raise bad_request(f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                          + ", ".join(repr(name) for name in unknown),
                          {name: "unknown query parameter" for name in unknown})


def parse(route: Route, req: falcon.Request, path: dict) -> Call:
    reject_unknown_query(req, {f.name for f in route.query})
    path_values = {}
    for f in route.path_fields:
        value = path[f.name]
        if f.problem(value):
            raise not_found(f"unknown {f.name.replace('_', ' ')} {value!r}"
                            + (f"; known: {', '.join(f.enum)}" if f.enum else ""))
        path_values[f.name] = value
    query = {}
    for f in route.query:
        raw = req.get_param(f.name)
        query[f.name] = f.default if raw is None else f.parse_text(raw)
        if query[f.name] is None and f.required:
            f.check(None)
    body = parse_body(route, req) if route.body else {}
    return Call(path_values, query, body, dict(req.headers), req.remote_addr or "")


def parse_body(route: Route, req: falcon.Request) -> dict:
    if req.content_length and req.content_length > MAX_BODY_BYTES:
        raise bad_request(f"request body larger than {MAX_BODY_BYTES} bytes")
    raw = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    if not raw:
        raise bad_request("a JSON object body is required")
    if len(raw) > MAX_BODY_BYTES:
        raise bad_request(f"request body larger than {MAX_BODY_BYTES} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request("the body is not valid JSON", {"body": str(exc)}) from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    known = {f.name: f for f in route.body}
    errors = {name: "unknown field" for name in body if name not in known}
    for name, f in known.items():
        problem = f.problem(body.get(name))
        if problem:
            errors[name] = problem
    if errors:
        raise ApiError(422, "VALIDATION_ERROR", f"{len(errors)} invalid field(s)", errors)
    return body


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
        if route.response and route.enveloped:
            write(resp, reply.data, reply.status, reply.metadata)
        elif reply.raw is not None:
            resp.status = reply.status
            resp.content_type = reply.content_type
            resp.data = reply.raw if isinstance(reply.raw, bytes) else reply.raw.encode()
        else:
            resp.status = reply.status
            resp.content_type = falcon.MEDIA_JSON
            resp.data = orjson.dumps(reply.data)


class OpenApiResource:
    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.body = orjson.dumps(document(routes))

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
    app.add_error_handler(falcon.HTTPError, _handle_error)
    return app
