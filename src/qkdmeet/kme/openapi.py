"""The OpenAPI 3 document of the ETSI GS QKD 014 API as this KME serves it."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS: dict[str, Any] = {
    "400": _json(_ref("Error"), "Bad request format"),
    "401": {"description": "Unauthorized (no body)"},
    "503": _json(_ref("Error"), "Error on server side"),
}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _op(summary: str, param: str, ok: str, **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [_path_param(param), *extra.pop("parameters", [])],
        "responses": {"200": _json(_ref(ok), "OK"), **_ERRORS},
        **extra,
    }


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_INT = {"type": "integer"}
_STR = {"type": "string"}
_OBJ = {"type": "object"}

SCHEMAS: dict[str, Any] = {
    "Status": {
        "type": "object",
        "required": [
            "source_KME_ID",
            "target_KME_ID",
            "master_SAE_ID",
            "slave_SAE_ID",
            "key_size",
            "stored_key_count",
            "max_key_count",
            "max_key_per_request",
            "max_key_size",
            "min_key_size",
            "max_SAE_ID_count",
        ],
        "properties": {
            **{
                k: _STR for k in ("source_KME_ID", "target_KME_ID", "master_SAE_ID", "slave_SAE_ID")
            },
            **{
                k: _INT
                for k in (
                    "key_size",
                    "stored_key_count",
                    "max_key_count",
                    "max_key_per_request",
                    "max_key_size",
                    "min_key_size",
                    "max_SAE_ID_count",
                )
            },
            "status_extension": _OBJ,
        },
    },
    "KeyRequest": {
        "type": "object",
        "properties": {
            "number": _INT,
            "size": {"type": "integer", "description": "bits, a multiple of 8"},
            "additional_slave_SAE_IDs": {"type": "array", "items": _STR},
            "extension_mandatory": {"type": "array", "items": _OBJ},
            "extension_optional": {"type": "array", "items": _OBJ},
        },
    },
    "KeyContainer": {
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key_ID", "key"],
                    "properties": {
                        "key_ID": {"type": "string", "format": "uuid"},
                        "key_ID_extension": _OBJ,
                        "key": {"type": "string", "format": "byte"},
                        "key_extension": _OBJ,
                    },
                },
            },
            "key_container_extension": _OBJ,
        },
    },
    "KeyIDs": {
        "type": "object",
        "required": ["key_IDs"],
        "properties": {
            "key_IDs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key_ID"],
                    "properties": {
                        "key_ID": {"type": "string", "format": "uuid"},
                        "key_ID_extension": _OBJ,
                    },
                },
            },
            "key_IDs_extension": _OBJ,
        },
    },
    "Error": {
        "type": "object",
        "required": ["message"],
        "properties": {"message": _STR, "details": {"type": "array", "items": _OBJ}},
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI document (served at ``/api/v1/openapi.json``)."""
    body = {"required": True, "content": {"application/json": {"schema": _ref("KeyRequest")}}}
    ids = {"required": True, "content": {"application/json": {"schema": _ref("KeyIDs")}}}
    uuid_q = _query("key_ID", {"type": "string", "format": "uuid"})
    return {
        "openapi": "3.0.3",
        "info": {"title": "qkdmeet KME: ETSI GS QKD 014 V1.1.1", "version": "1.1.1"},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"mutualTLS": {"type": "mutualTLS"}},
        },
        "paths": {
            "/api/v1/keys/{slave_SAE_ID}/status": {
                "get": _op("Get status", "slave_SAE_ID", "Status"),
            },
            "/api/v1/keys/{slave_SAE_ID}/enc_keys": {
                "get": _op(
                    "Get key",
                    "slave_SAE_ID",
                    "KeyContainer",
                    parameters=[_query("number", _INT), _query("size", _INT)],
                ),
                "post": _op("Get key", "slave_SAE_ID", "KeyContainer", requestBody=body),
            },
            "/api/v1/keys/{master_SAE_ID}/dec_keys": {
                "get": _op(
                    "Get key with key IDs", "master_SAE_ID", "KeyContainer", parameters=[uuid_q]
                ),
                "post": _op(
                    "Get key with key IDs", "master_SAE_ID", "KeyContainer", requestBody=ids
                ),
            },
        },
    }
