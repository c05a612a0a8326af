"""``/openapi.json`` generated from the route definitions, and ``/docs`` (Swagger UI, local assets)."""

from __future__ import annotations

from pathlib import Path

from rtsig import __version__ as RTSIG_VERSION
from web.schemas import COMPONENTS, envelope, ref
from web.spec import Route

STATUS_TEXT = {200: "OK", 201: "Created", 400: "Bad request (malformed JSON or query parameter)",
               401: "Authorization: Bearer <RTSIG_API_TOKEN> missing",
               403: "Bearer token not valid", 404: "Unknown strategy, symbol, config or version",
               409: "Version conflict (expected_version is not the stored version)",
               422: "Validation failed: one error per bad field", 429: "Rate limit (see Retry-After)",
               503: "A dependency is down (config store, market data); see the message"}
SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                 "favicon-32x32.png", "favicon-16x16.png")


def _operation(route: Route) -> dict:
    op: dict = {"operationId": route.operation_id, "summary": route.summary, "tags": [route.tag],
                "parameters": [], "responses": {}}
    if route.description:
        op["description"] = route.description
    for f in route.path_fields:
        op["parameters"].append({"name": f.name, "in": "path", "required": True,
                                 "description": f.description, "schema": f.schema()})
    for f in route.query:
        op["parameters"].append({"name": f.name, "in": "query", "required": f.required,
                                 "description": f.description, "schema": f.schema()})
    if route.body:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": route.body_schema}}}
    for status in route.success:
        if route.response and not route.enveloped:
            schema = ref(route.response)
        elif route.response:
            schema = envelope(route.response)
        elif "schema" in route.extra:
            schema = ref(route.extra["schema"])
        else:
            schema = {"type": "string"}
        op["responses"][str(status)] = {"description": STATUS_TEXT.get(status, "OK"),
                                        "content": {route.content_type.split(";")[0]: {"schema": schema}}}
    for status in route.errors:
        op["responses"][str(status)] = {"description": STATUS_TEXT[status],
                                        "content": {"application/json": {"schema": ref(
                                            "ErrorEnvelope" if route.enveloped else "BareError")}}}
    if route.mutating:
        op["security"] = [{"bearer": []}, {}]
    return op


def document(routes: tuple[Route, ...]) -> dict:
    paths: dict[str, dict] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {"title": "rtsig operator API", "version": RTSIG_VERSION,
                 "description": "Strategy configuration, live order-book metrics, health and "
                                "Prometheus metrics of an rtsig host. Every /api/v1/strategies "
                                "response uses the envelope {success, data, error, metadata}; the "
                                "market metrics (/api/v1/metrics) answer bare objects and errors "
                                "as {error}."},
        "paths": paths,
        "components": {
            "schemas": {**COMPONENTS,
                        **{f"{r.response}Envelope": envelope(r.response) for r in routes
                           if r.response and r.enveloped}},
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
