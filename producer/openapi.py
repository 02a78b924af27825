"""The OpenAPI 3 description of the producer's HTTP interface, served at /openapi.json."""

from __future__ import annotations

from typing import Any

import orjson

WEBHOOK_PATH = "/webhooks/agntix"
# The public listener's only other path: alive or not, for load balancers.
LIVENESS_PATH = "/livez"
PUBLIC_PATHS = frozenset({WEBHOOK_PATH, LIVENESS_PATH})
# Served on the admin listener only; the public one answers 404 for each.
ADMIN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


def openapi_document(max_body_bytes: int) -> dict[str, Any]:
    error = _json("Refused, with a reason code.", _ERROR)
    retry = {
        **_json("Kafka cannot take the event now: try again.", _ERROR),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "sessionflow producer",
            "version": "1.0.0",
            "description": "Verifies Agntix webhooks (Standard Webhooks / Svix signatures) and "
            "stores the raw bytes in Kafka before answering 2xx. Two listeners: the paths tagged "
            "`public` are served on SESSIONFLOW_HTTP_PORT (8080) only, those tagged `admin` on "
            "SESSIONFLOW_ADMIN_PORT (8081) only; each answers 404 for the other's paths.",
        },
        "paths": {
            WEBHOOK_PATH: {
                "post": {
                    "operationId": "receiveWebhook",
                    "tags": ["public"],
                    "parameters": [
                        _header("svix-id", "Message id, the same on every retry."),
                        _header("svix-timestamp", "Unix seconds of this attempt."),
                        _header("svix-signature", "Space-separated `v1,<base64>` signatures."),
                        _header("webhook-id", "Standard Webhooks alternative to svix-id."),
                        _header("webhook-timestamp", "Alternative to svix-timestamp."),
                        _header("webhook-signature", "Alternative to svix-signature."),
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "eventType": {"type": "string"},
                                        "id": {"type": "string"},
                                        "sessionId": {"type": "string"},
                                    },
                                    "additionalProperties": True,
                                }
                            }
                        },
                        "description": f"The event, at most {max_body_bytes} bytes.",
                    },
                    "responses": {
                        "202": _json(
                            "Stored in Kafka (raw topic, or the DLQ when signed but unusable).",
                            {
                                "type": "object",
                                "required": ["status"],
                                "properties": {
                                    "status": {
                                        "type": "string",
                                        "enum": ["accepted", "dead_lettered"],
                                    },
                                    "messageId": {"type": "string"},
                                    "reason": {"type": "string"},
                                },
                            },
                        ),
                        "400": error,
                        "401": error,
                        "408": error,
                        "413": error,
                        "415": error,
                        "431": error,
                        "503": retry,
                    },
                },
                **{
                    method: {"tags": ["public"], "responses": {"405": error}}
                    for method in ("get", "put", "patch", "delete")
                },
            },
            LIVENESS_PATH: {
                "get": {
                    "operationId": "livez",
                    "tags": ["public"],
                    "responses": {"200": _json("Alive.", {"type": "object"})},
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "tags": ["admin"],
                    "responses": {"200": _json("Alive.", {"type": "object"})},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "tags": ["admin"],
                    "responses": {
                        "200": _json("Kafka reachable, producer working.", {"type": "object"}),
                        "503": _json(
                            "Not ready: Kafka unreachable or producer broken.", {"type": "object"}
                        ),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "tags": ["admin"],
                    "responses": {
                        "200": {
                            "description": "Prometheus text format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "tags": ["admin"],
                    "responses": {"200": _json("This document.", {"type": "object"})},
                }
            },
        },
    }


def render_openapi(max_body_bytes: int) -> bytes:
    return orjson.dumps(openapi_document(max_body_bytes))
