"""``textlstm serve``: a run folder (or an ONNX export) behind an HTTP JSON API, on FastAPI.

- ``POST /predict``: ``{"text": "..."}`` or ``{"texts": ["...", ...]}``, optional ``"top_k"``
  -> ``{"predictions": [{"label", "score", "scores"}, ...]}`` in the order of the texts.
- ``GET /health`` -> ``{"status": "ok"}``; ``GET /metadata``: labels, recipe, engine, limits and
  versions.

Requests are limited in body size, texts per request and characters per text; going over one is
a 413 or 422 with ``{"error": "..."}`` naming the limit. Concurrent requests are batched into
shared forward passes (``batcher.py``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import textlstm
from textlstm.predict.predictor import Predictor, predictions
from textlstm.serve.batcher import Batcher


@dataclass
class Limits:
    max_body_bytes: int = 1 << 20  # a request body
    max_texts: int = 256  # texts in one request
    max_chars: int = 100_000  # characters in one text
    max_batch: int = 64  # texts in one shared forward pass
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    batching: bool = True


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    texts: list[str] | None = None
    top_k: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give "text" (one string) or "texts" (a list of strings)')
        return self


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def create_app(predictor: Predictor, limits: Limits | None = None, about: Any = None) -> FastAPI:
    """The API over ``predictor``; ``about`` (JSON-ready) is added to ``/metadata``."""
    limits = limits or Limits()
    batcher = Batcher(
        predictor.probabilities, limits.max_batch, limits.max_wait_ms / 1000, limits.batching
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="textlstm", version=textlstm.__version__, lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return {
            "labels": predictor.labels,
            "decision": predictor.decision.to_dict(predictor.labels),
            "engine": type(predictor).__name__,
            "mode": getattr(predictor, "mode", None),
            "limits": asdict(limits),
            "batches": asdict(batcher.stats),
            "textlstm": textlstm.__version__,
            **(about or {}),
        }

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        body = await _body(request, limits.max_body_bytes)
        texts, top_k = _texts(body, limits)
        probabilities = await batcher.submit(texts)
        multi = predictor.decision.multi_label
        out = []
        for one in predictions(predictor.labels, predictor.decision, probabilities):
            ranked = sorted(one.scores.items(), key=lambda kv: -kv[1])[: top_k or None]
            record: dict[str, Any] = {
                "label": one.label,
                "score": round(one.score, 6),
                "scores": {name: round(value, 6) for name, value in ranked},
            }
            if multi:  # every label whose score reaches its threshold, highest first
                record["labels"] = one.labels
            out.append(record)
        return {"predictions": out}

    return app


async def _body(request: Request, limit: int) -> bytes:
    """The request body, read no further than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"the request body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the request body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _texts(body: bytes, limits: Limits) -> tuple[list[str], int | None]:
    try:
        parsed = PredictRequest.model_validate(json.loads(body))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refused(400, f"the body is not valid JSON ({exc})") from None
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise Refused(422, f"{where + ': ' if where else ''}{problem['msg']}") from None
    texts = [parsed.text] if parsed.text is not None else parsed.texts or []
    if not texts:
        raise Refused(422, "texts: give at least one text")
    if len(texts) > limits.max_texts:
        raise Refused(
            413, f"texts: {len(texts):,} texts in one request; the limit is {limits.max_texts:,}"
        )
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise Refused(
                413,
                f"texts[{i}]: {len(text):,} characters; the limit is {limits.max_chars:,} per text",
            )
    return texts, parsed.top_k
