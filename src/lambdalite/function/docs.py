"""The documents the function serves about itself: the page to try the model (`GET /`) and
the OpenAPI description of its HTTP API (`GET /openapi.json`). Both are built from the bundle's
manifest and the response shape, so they say what this function answers.
"""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path
from typing import Any

from lambdalite import __version__
from lambdalite.core.bundle import Manifest
from lambdalite.function.web import HttpResponse
from lambdalite.settings import ResponseShape

__all__ = ["openapi", "page"]

PAGE = Path(__file__).parent / "page" / "index.html"


@cache
def _page_template() -> str:
    return PAGE.read_text(encoding="utf-8")


def page(manifest: Manifest) -> HttpResponse:
    captioner = manifest.task == "image-to-text"
    task = "captions images" if captioner else "classifies images"
    # A captioner shows its beam alternatives; a classifier its top-k.
    options = {"beam_size": 3} if captioner else {"top_k": int(manifest.output.top_k)}
    description = f"{manifest.name} {manifest.version} {task} ({manifest.engine}), served by lambdalite {__version__}"
    text = (
        _page_template()
        .replace("{{MODEL_NAME}}", html.escape(manifest.name))
        .replace("{{DESCRIPTION}}", html.escape(description))
        .replace("{{TOP_K}}", str(int(manifest.output.top_k)))
        .replace("{{OPTIONS}}", json.dumps(options))
    )
    return HttpResponse(200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"}, text.encode())


def _schema_for(manifest: Manifest, shape: ResponseShape) -> dict[str, Any]:
    if manifest.task == "image-to-text":
        caption = {"type": "object", "properties": {"caption": {"type": "string"}, "score": {"type": "number"}}}
        return {
            "type": "object",
            "required": ["caption", "score"],
            "properties": {
                "caption": {"type": "string"},
                "score": {"type": "number"},
                "alternatives": {"type": "array", "items": caption},
            },
        }
    if shape == "scores":
        return {"type": "object", "additionalProperties": {"type": "number"}}
    if shape == "top1":
        return {
            "type": "object",
            "required": ["class", "confidence"],
            "properties": {"class": {"type": "string"}, "confidence": {"type": "number"}},
        }
    return {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["className", "probability"],
            "properties": {
                "className": {"type": "string"},
                "probability": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
    }


def openapi(manifest: Manifest, shape: ResponseShape) -> dict[str, Any]:
    error = {
        "type": "object",
        "properties": {
            "error": {"type": "object", "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}
        },
    }
    json_request = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "inputImageUrl": {"type": "string", "format": "uri"},
            "image": {"type": "string", "format": "byte", "description": "base64 (or a base64 data: URL)"},
            "images": {"type": "array", "items": {"type": "string", "format": "byte"}, "maxItems": 16},
            "urls": {"type": "array", "items": {"type": "string", "format": "uri"}, "maxItems": 16},
            "top_k": {"type": "integer", "minimum": 1},
        },
    }
    errors = {
        str(code): {"description": text, "content": {"application/json": {"schema": error}}}
        for code, text in (
            (400, "bad input: not an image, bad JSON, no input"),
            (413, "body or image over the size cap"),
            (415, "unsupported content type"),
            (422, "URL refused (scheme or private address)"),
            (502, "the image URL could not be fetched"),
            (504, "fetching the image URL timed out"),
        )
    }
    predict = {
        "summary": f"Run {manifest.name} on an image",
        "parameters": [{"name": "top_k", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
        "requestBody": {
            "required": True,
            "content": {
                "image/*": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "url": {"type": "string"},
                            "top_k": {"type": "integer"},
                        },
                    }
                },
                "application/json": {"schema": json_request},
            },
        },
        "responses": {
            "200": {
                "description": "the prediction",
                "content": {"application/json": {"schema": _schema_for(manifest, shape)}},
            },
            **errors,
        },
    }
    by_url = {
        "summary": "Run the model on the image at a URL",
        "parameters": [
            {"name": "url", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "top_k", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        ],
        "responses": predict["responses"],
    }
    plain = {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
    model_path = "/v2/models/{model_name}"
    name_param = [{"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{manifest.name} (lambdalite)",
            "version": manifest.version,
            "description": json.dumps({"task": manifest.task, "engine": manifest.engine}),
        },
        "paths": {
            "/": {
                "get": {
                    "summary": "The page to try the model",
                    "responses": {
                        "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
                    },
                }
            },
            "/predict": {"post": predict, "get": by_url},
            "/invocations": {"post": {**predict, "summary": "Seed 004's route: same as /predict"}},
            "/openapi.json": {"get": {"summary": "This document", "responses": plain}},
            "/v2": {"get": {"summary": "OIP v2 server metadata", "responses": plain}},
            "/v2/health/live": {"get": {"summary": "OIP v2 liveness", "responses": plain}},
            "/v2/health/ready": {"get": {"summary": "OIP v2 readiness", "responses": plain}},
            model_path: {"get": {"summary": "OIP v2 model metadata", "parameters": name_param, "responses": plain}},
            model_path + "/ready": {
                "get": {"summary": "OIP v2 model readiness", "parameters": name_param, "responses": plain}
            },
            model_path + "/infer": {
                "post": {
                    "summary": "OIP v2 inference: JSON tensors, or encoded images as one BYTES input (base64)",
                    "parameters": name_param,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                    "responses": plain,
                }
            },
        },
    }
