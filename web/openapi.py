"""``/openapi.json`` generated from the routes and their types, and ``/docs`` (Swagger UI, local assets).

Every schema comes from the msgspec types of :mod:`web.types` (JSON Schema 2020-12, hence
OpenAPI 3.1): the documentation is what the app validates and what the handlers build. The
configuration routes are documented once per strategy, each with that strategy's parameters
(names, types and ranges from the registry), so a body the document calls valid is one the
service accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from rtsig import __version__ as RTSIG_VERSION
from rtsig.registry import STRATEGIES
from web import types as T
from web.route import Route

STATUS_TEXT = {200: "OK", 201: "Created", 400: "Bad request (malformed JSON, or an unknown or bad query parameter)",
               401: "Authorization: Bearer <RTSIG_API_TOKEN> missing",
               403: "Bearer token not valid", 404: "Unknown strategy, symbol, config or version",
               409: "Conflict: expected_version is not the stored version, a rollback target was a "
                    "deletion, or the query and body name different symbols",
               422: "Validation failed: one error per bad field", 429: "Rate limit (see Retry-After)",
               503: "A dependency is down (config store, market data); see the message"}
SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                 "favicon-32x32.png", "favicon-16x16.png")
REF = "#/components/schemas/{name}"
BARE_PREFIX = "/api/v1/metrics"


class _Schemas:
    """Collects the types an operation names and turns them into component schemas at the end."""

    def __init__(self) -> None:
        self.types: list[Any] = [T.ErrorEnvelope, T.BareError]
        self.inline: list[tuple[dict, str, Any]] = []  # (where, key, type): filled in by finish()

    def ref(self, where: dict, key: str, typ: Any) -> None:
        self.types.append(typ)
        self.inline.append((where, key, typ))

    def finish(self) -> dict:
        schemas, components = msgspec.json.schema_components(self.types, ref_template=REF)
        by_type = dict(zip(map(id, self.types), schemas))
        for where, key, typ in self.inline:
            where[key] = by_type[id(typ)]
        return components


def _parameter(f: msgspec.structs.FieldInfo, where: str) -> dict:
    schema = msgspec.json.schema(f.type)
    schema.pop("$defs", None)
    description = schema.pop("description", None) or _nested_description(schema)
    if not f.required and f.default is not msgspec.NODEFAULT and f.default is not None:
        schema["default"] = f.default
    out = {"name": f.name, "in": where, "required": where == "path" or f.required, "schema": schema}
    if description:
        out["description"] = description
    return out


def _nested_description(schema: dict) -> str | None:
    for option in schema.get("anyOf", ()):
        if "description" in option:
            return option.pop("description")
    return None


def _envelope(data: dict) -> dict:
    return {"type": "object", "required": ["success", "data", "error", "metadata"],
            "properties": {"success": {"const": True}, "data": data, "error": {"type": "null"},
                           "metadata": {"anyOf": [{"type": "object"}, {"type": "null"}]}}}


def _operation(route: Route, schemas: _Schemas, strategy_id: str | None = None) -> dict:
    suffix = "" if strategy_id is None else "_" + strategy_id
    op: dict = {"operationId": route.operation_id + suffix, "summary": route.summary,
                "tags": [route.tag], "parameters": [], "responses": {}}
    if route.path_params is not None:
        op["parameters"] += [_parameter(f, "path") for f in msgspec.structs.fields(route.path_params)
                             if not (strategy_id and f.name == "strategy_id")]
    op["parameters"] += [_parameter(f, "query") for f in msgspec.structs.fields(route.query)]
    if route.body is not None:
        body = T.change_request_for(strategy_id) if strategy_id and route.body is T.ChangeRequest else route.body
        content: dict = {}
        schemas.ref(content, "schema", body)
        op["requestBody"] = {"required": True, "content": {"application/json": content}}
    for status in route.success:
        media: dict = {}
        if route.response is None:
            media["schema"] = {"type": "string"}
        elif route.enveloped:
            media["schema"] = _envelope({})
            schemas.ref(media["schema"]["properties"], "data", route.response)
        else:
            schemas.ref(media, "schema", route.response)
        op["responses"][str(status)] = {"description": STATUS_TEXT.get(status, "OK"),
                                        "content": {route.content_type.split(";")[0]: media}}
    error = {"$ref": REF.format(name="BareError" if route.path.startswith(BARE_PREFIX) else "ErrorEnvelope")}
    for status in route.errors:
        op["responses"][str(status)] = {"description": STATUS_TEXT[status],
                                        "content": {"application/json": {"schema": error}}}
    if route.mutating:
        op["security"] = [{"bearer": []}, {}]
    return op


def document(routes: tuple[Route, ...]) -> dict:
    schemas = _Schemas()
    paths: dict[str, dict] = {}
    for route in routes:
        if route.per_strategy:
            for sid in STRATEGIES:
                path = route.path.replace("{strategy_id}", sid)
                paths.setdefault(path, {})[route.method.lower()] = _operation(route, schemas, sid)
        else:
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "rtsig operator API", "version": RTSIG_VERSION,
                 "description": "Strategy configuration, live order-book metrics, health and "
                                "Prometheus metrics of an rtsig host. Every /api/v1/strategies "
                                "response uses the envelope {success, data, error, metadata}; the "
                                "market metrics (/api/v1/metrics) answer bare objects and errors "
                                "as {error}. A query parameter an operation does not list is a 400."},
        "paths": paths,
        "components": {
            "schemas": schemas.finish(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "RTSIG_API_TOKEN; needed for changes when set"}},
        },
    }


def swagger_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


DOCS_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>rtsig operator API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  docExpansion: "list", defaultModelsExpandDepth: 0, validatorUrl: null});
</script></body></html>
"""
