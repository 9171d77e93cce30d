"""The ASGI app: Starlette routes over an ``InferenceService`` (KServe v2 / Triton HTTP protocol).

Starlette rather than FastAPI: the protocol is fixed and its tensors are validated with numpy,
so FastAPI's pydantic models and OpenAPI pages would add a dependency and per-request cost for
nothing. Starlette is the routing/request layer FastAPI itself is built on.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ..errors import DependencyError
from ..runtime import Model
from .protocol import RequestError
from .service import (
    DEFAULT_BATCH_TIMEOUT_MS,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_BODY_BYTES,
    InferenceService,
    Reply,
    error_reply,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading it where it says so)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"request body of {declared} bytes exceeds the limit of {limit}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"request body exceeds the limit of {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    model: Model,
    name: str | None = None,
    *,
    max_concurrency: int = DEFAULT_CONCURRENCY,
    max_batch: int | None = None,
    batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Starlette:
    """A Starlette app serving ``model`` as ``name`` (default: the file's stem); ``app.state.service``.

    The caller keeps ownership of ``model`` (close it after the server stops).
    """
    try:
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.responses import Response
        from starlette.routing import Route
    except ImportError as err:
        raise DependencyError(
            "scconv-serve needs Starlette and uvicorn: pip install 'scconv-deploy[serve]'"
        ) from err

    service = InferenceService(
        model,
        name or model.path.stem,
        max_concurrency=max_concurrency,
        max_batch=max_batch,
        batch_timeout_ms=batch_timeout_ms,
        max_body_bytes=max_body_bytes,
    )

    def respond(reply: Reply) -> Response:
        return Response(reply.body, reply.status, headers=reply.headers)

    def get(path: str, handler: Callable[..., Reply]) -> Route:
        async def endpoint(request: Request) -> Response:
            return respond(handler(**request.path_params))

        return Route(path, endpoint, methods=["GET"])

    async def infer(request: Request) -> Response:
        params: dict[str, Any] = request.path_params
        reply = await service.infer(
            params["name"],
            params.get("version"),
            request.headers,
            lambda: _read_body(request, service.max_body_bytes),
        )
        return respond(reply)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        return respond(error_reply(getattr(exc, "detail", None) or str(exc), status))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    routes = [
        get("/v2", service.server_metadata),
        get("/v2/health/live", service.live),
        get("/v2/health/ready", service.server_ready),
        get("/v2/models/{name}", service.model_metadata),
        get("/v2/models/{name}/versions/{version}", service.model_metadata),
        get("/v2/models/{name}/ready", service.model_ready),
        get("/v2/models/{name}/versions/{version}/ready", service.model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        get("/metrics", service.prometheus),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.service = service
    return app
