"""Check 1: the committed OpenAPI document is valid OpenAPI 3 and good enough
for Swagger UI and SDK generators.

Usage: check_spec.py OPENAPI_JSON [SERVED_URL]

- validates with openapi-spec-validator;
- every operation has an operationId, a summary, a description and a tag;
- every request body and every 2xx response body has an example that is
  valid against its own schema; bodies are JSON, except a success body
  that is not JSON at all (GET /metrics: Prometheus text), whose media
  types each need an example;
- every operation except /health documents 400, 401, 403, 413 and 500 with
  the ErrorResponse schema;
- the Bearer security scheme exists and every operation except the public
  ones (health, login) and the WebSocket upgrade requires it;
- every schema and every property has a description;
- when SERVED_URL is given, the running server serves exactly this document.
"""

import json
import sys
import urllib.request

from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

ERROR_STATUSES = ["400", "401", "403", "413", "500"]
PUBLIC_OPERATIONS = {"health", "login"}
# May authenticate with the Bearer header or, for browsers, with its first
# WebSocket message, so the document cannot require the header.
AUTH_OPTIONAL_OPERATIONS = {"liveQueries"}
ERROR_SCHEMA = "#/components/schemas/ErrorResponse"

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def resolve(spec: dict, node, depth: int = 0):
    """`node` with every local `$ref` replaced by its target."""
    if depth > 32:
        raise ValueError("reference cycle in the document")
    if isinstance(node, dict):
        if "$ref" in node:
            target = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(spec, target, depth + 1)
        return {k: resolve(spec, v, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(spec, v, depth + 1) for v in node]
    return node


def check_example(spec: dict, where: str, schema_ref: dict) -> None:
    """The body schema at `where` has an example that validates against it."""
    schema = resolve(spec, schema_ref)
    example = schema.get("example")
    if example is None:
        problem(f"{where}: no example")
        return
    errors = list(OAS30Validator(schema).iter_errors(example))
    for error in errors:
        problem(f"{where}: the example does not match the schema: {error.message}")


def is_success(status: str) -> bool:
    """2xx, or 101 for the WebSocket upgrade."""
    return status.startswith("2") or status == "101"


def json_media(where: str, content: dict) -> dict | None:
    for media_type, media in content.items():
        if media_type.split(";")[0].strip() == "application/json":
            return media
    problem(f"{where}: no application/json content")
    return None


def check_operation(spec: dict, path: str, method: str, op: dict, seen_ids: set) -> None:
    where = f"{method.upper()} {path}"
    op_id = op.get("operationId")
    if not op_id:
        problem(f"{where}: no operationId")
    elif op_id in seen_ids:
        problem(f"{where}: duplicate operationId {op_id}")
    else:
        seen_ids.add(op_id)
    for field in ("summary", "description"):
        if not op.get(field, "").strip():
            problem(f"{where}: no {field}")
    if not op.get("tags"):
        problem(f"{where}: no tag")

    body = op.get("requestBody")
    if body is not None:
        media = json_media(f"{where} request", body.get("content", {}))
        if media:
            check_example(spec, f"{where} request body", media["schema"])

    responses = op.get("responses", {})
    for status, response in responses.items():
        if not response.get("description", "").strip():
            problem(f"{where} {status}: response without a description")
        if "content" not in response:
            continue
        if status.startswith("2") and not any(
            media_type.split(";")[0].strip() == "application/json"
            for media_type in response["content"]
        ):
            # A non-JSON success body (text/plain for /metrics).
            for media_type, media in response["content"].items():
                check_example(spec, f"{where} {status} {media_type} response", media["schema"])
            continue
        media = json_media(f"{where} {status}", response["content"])
        if media is None:
            continue
        if status.startswith("2"):
            check_example(spec, f"{where} {status} response", media["schema"])
        elif status == "101":
            pass  # describes the WebSocket frames, not an HTTP body
        elif media["schema"].get("$ref") != ERROR_SCHEMA:
            problem(f"{where} {status}: error response without the ErrorResponse schema")
    if not any(is_success(s) for s in responses):
        problem(f"{where}: no success response")

    if path != "/health":
        for status in ERROR_STATUSES:
            if status not in responses:
                problem(f"{where}: error response {status} is not documented")

    security = op.get("security", [])
    if op_id in PUBLIC_OPERATIONS:
        if security:
            problem(f"{where}: public operation requires authentication")
    elif op_id in AUTH_OPTIONAL_OPERATIONS:
        pass
    elif not any("BearerAuth" in requirement for requirement in security):
        problem(f"{where}: does not require the BearerAuth scheme")


def check_schemas(spec: dict) -> None:
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        if not schema.get("description", "").strip():
            problem(f"schema {name}: no description")
        for prop, prop_schema in schema.get("properties", {}).items():
            if "$ref" in prop_schema:
                target = resolve(spec, prop_schema)
                has_description = bool(target.get("description"))
            else:
                has_description = bool(prop_schema.get("description", "").strip())
            if not has_description:
                problem(f"schema {name}: property {prop} has no description")
        if "example" in schema:
            check_example(spec, f"schema {name}", {"$ref": f"#/components/schemas/{name}"})


def main() -> int:
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)

    validate(spec)
    print(f"{path}: valid OpenAPI {spec['openapi']} (openapi-spec-validator)")
    if not str(spec.get("openapi", "")).startswith("3."):
        problem("not an OpenAPI 3 document")
    for field in ("title", "version", "description"):
        if not spec.get("info", {}).get(field):
            problem(f"info.{field} is missing")

    scheme = spec.get("components", {}).get("securitySchemes", {}).get("BearerAuth")
    if not scheme or scheme.get("type") != "http" or scheme.get("scheme") != "bearer":
        problem("components.securitySchemes.BearerAuth is not an HTTP bearer scheme")

    seen_ids: set[str] = set()
    count = 0
    for route, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method in {"get", "put", "post", "delete", "patch", "head", "options", "trace"}:
                count += 1
                check_operation(spec, route, method, op, seen_ids)
    check_schemas(spec)
    print(f"checked {count} operations and {len(spec['components']['schemas'])} schemas")

    if len(sys.argv) > 2:
        with urllib.request.urlopen(sys.argv[2], timeout=10) as response:
            served = json.load(response)
        if served != spec:
            problem(f"{sys.argv[2]} differs from {path}: run ./scripts/gen-openapi.sh")
        else:
            print(f"{sys.argv[2]} serves the committed document")

    for message in problems:
        print(f"PROBLEM: {message}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
