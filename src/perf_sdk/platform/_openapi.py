"""An OpenAPI 3 description of the local platform's write and read APIs.

Written by hand (the routes are few and their contract is backdrop's, not
Starlette's): it documents the protocol for people, and lets property-based
tools such as schemathesis drive the server with valid and edge-case requests.
"""

from __future__ import annotations

from typing import Any

from perf_sdk._version import __version__

__all__ = ["openapi_spec"]

_SLUG = "^[a-z0-9]+(?:-[a-z0-9]+)*$"
_KEY = "^[A-Za-z_][A-Za-z0-9_]+$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_spec(*, max_body_bytes: int) -> dict[str, Any]:
    """The OpenAPI document served at ``/openapi.json``."""
    error = _json(_ref("Error"), "Error")
    bad_request = _json(_ref("BadRequest"), "Invalid request: one message per problem")
    path_params = [
        {"name": "group", "in": "path", "required": True, "schema": {"type": "string", "pattern": _SLUG}},
        {"name": "type", "in": "path", "required": True, "schema": {"type": "string", "pattern": _SLUG}},
    ]

    def repeated(name: str, pattern: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "style": "form",
            "explode": True,
            "schema": {"type": "array", "items": {"type": "string", "pattern": pattern}},
        }

    read_params: list[dict[str, Any]] = [
        {
            "name": "start_at",
            "in": "query",
            "description": "Inclusive start, ISO 8601 with a zone; with period, a period boundary.",
            "schema": {"type": "string", "format": "date-time"},
        },
        {
            "name": "end_at",
            "in": "query",
            "description": "Exclusive end, ISO 8601 with a zone; with period, a period boundary.",
            "schema": {"type": "string", "format": "date-time"},
        },
        {
            "name": "period",
            "in": "query",
            "description": "Aggregate by UTC period; weeks start on Monday.",
            "schema": {"type": "string", "enum": ["hour", "day", "week", "month", "quarter", "year"]},
        },
        {
            "name": "duration",
            "in": "query",
            "description": ("Number of periods (with period): from start_at, to end_at, or before the current one."),
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
        repeated("group_by", _KEY, "Group by this field (repeatable)."),
        repeated("filter_by", "^[A-Za-z_][A-Za-z0-9_]+:.*$", "field:value, records must match (repeatable)."),
        repeated(
            "filter_by_prefix",
            "^[A-Za-z_][A-Za-z0-9_]+:.*$",
            "field:start, text must start with it, literally (repeatable; not with filter_by).",
        ),
        repeated(
            "collect",
            "^[A-Za-z][A-Za-z0-9_]+(:(sum|count|mean|set))?$",
            "field[:sum|count|mean|set]; bare means set (repeatable).",
        ),
        {
            "name": "sort_by",
            "in": "query",
            "description": "field:ascending|descending.",
            "schema": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_:]+:(ascending|descending)$"},
        },
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {
            "name": "flatten",
            "in": "query",
            "description": "true: one item per period and group (every combination filled), not groups of values.",
            "schema": {"type": "string", "enum": ["true", "false"]},
        },
        {
            "name": "inclusive",
            "in": "query",
            "description": "true: a record exactly at end_at counts.",
            "schema": {"type": "string", "enum": ["true", "false"]},
        },
        {
            "name": "format",
            "in": "query",
            "description": "csv: the data as a spreadsheet-safe CSV file.",
            "schema": {"type": "string", "enum": ["json", "csv"]},
        },
    ]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "perf_sdk local Performance Platform",
            "version": __version__,
            "description": (
                "The write and read APIs of GOV.UK's Performance Platform (backdrop), served locally for "
                "development, demos and tests."
            ),
        },
        "paths": {
            "/_status": {
                "get": {
                    "operationId": "status",
                    "summary": "Health check",
                    "responses": {
                        "200": _json(_ref("Status"), "The platform and its database answer"),
                        "500": error,
                    },
                }
            },
            "/_status/data-sets": {
                "get": {
                    "operationId": "data_set_status",
                    "summary": "Data sets not written within their max_age_expected",
                    "responses": {"200": _json(_ref("Status"), "status ok, or not okay with the data_sets")},
                }
            },
            "/data-sets/{name}": {
                "delete": {
                    "operationId": "delete_data_set",
                    "summary": "Remove a data set and its records (admin token)",
                    "security": [{"bearer": []}],
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"200": _json(_ref("Status"), "Deleted"), "401": error, "404": error},
                }
            },
            "/data/{group}/{type}": {
                "parameters": path_params,
                "get": {
                    "operationId": "read",
                    "summary": "Read records, or aggregates by group and period",
                    "parameters": read_params,
                    "responses": {
                        "200": _json(_ref("ReadResponse"), "The data"),
                        "304": {"description": "Not modified (If-None-Match matched the ETag)"},
                        "400": bad_request,
                        "404": error,
                    },
                },
                "post": {
                    "operationId": "write",
                    "summary": "Store records (upsert by _id)",
                    "description": (
                        "Body: one record or a list, JSON, optionally gzip (Content-Encoding: gzip); "
                        f"at most {max_body_bytes} bytes as sent."
                    ),
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [_ref("Record"), {"type": "array", "items": _ref("Record")}],
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(_ref("Ok"), "Stored"),
                        "400": bad_request,
                        "401": error,
                        "404": error,
                        "413": error,
                        "415": error,
                    },
                },
                "put": {
                    "operationId": "empty",
                    "summary": "Empty the data set (body: [])",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "array", "maxItems": 0}}},
                    },
                    "responses": {
                        "200": _json(_ref("Ok"), "Emptied"),
                        "400": bad_request,
                        "401": error,
                        "404": error,
                        "413": error,
                    },
                },
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Ok": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["ok"]}},
                },
                "Status": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string"}, "message": {"type": "string"}},
                },
                "Error": {
                    "type": "object",
                    "required": ["status", "message"],
                    "properties": {
                        "status": {"type": "string", "enum": ["error"]},
                        "message": {"type": "string"},
                    },
                },
                "BadRequest": {
                    "type": "object",
                    "required": ["messages"],
                    "properties": {
                        "status": {"type": "string"},
                        "message": {"type": "string"},
                        "messages": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "Record": {
                    "type": "object",
                    "description": (
                        "Keys match ^[a-z_][a-z0-9_]+$ once lower-cased (ASCII); of the keys starting with _, "
                        "only _id, _timestamp, _start_at and _end_at; values are strings, numbers, booleans or "
                        "null. Times are ISO 8601: a fraction, a naive time (UTC) or a date alone are accepted."
                    ),
                    "properties": {
                        "_id": {"type": "string", "pattern": "^\\S+$"},
                        "_timestamp": {"type": "string", "format": "date-time"},
                        "_start_at": {"type": "string", "format": "date-time"},
                        "_end_at": {"type": "string", "format": "date-time"},
                    },
                    "additionalProperties": {
                        "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
                        "nullable": True,
                    },
                },
                "ReadResponse": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {"data": {"type": "array", "items": {"type": "object"}}},
                },
            },
        },
    }
