"""The inference service behind the HTTP routes: KServe v2 endpoints as plain methods returning replies.

Inference runs off the event loop in a thread pool of ``max_concurrency`` workers, gated by a
semaphore of as many slots (requests beyond that wait); with ``max_batch`` > 1, requests go
through a ``DynamicBatcher`` first. Nothing here knows the HTTP framework (see ``app``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .._version import __version__
from ..runtime import InputError, Model, TensorSpec
from .batching import DynamicBatcher
from .metrics import Metrics
from .protocol import (
    HEADER_LENGTH,
    InferRequest,
    RequestError,
    datatype,
    encode_infer_response,
    parse_infer_request,
)

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 2
DEFAULT_BATCH_TIMEOUT_MS = 2.0
DEFAULT_MAX_BODY_BYTES = 64 * 2**20
VERSION = "1"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(payload: object, status: int = 200) -> Reply:
    return Reply(
        status, json.dumps(payload, separators=(",", ":")).encode(), {"content-type": "application/json"}
    )


def error_reply(message: str, status: int) -> Reply:
    return json_reply({"error": message}, status)


def _tensor_metadata(spec: TensorSpec) -> dict[str, object]:
    return {
        "name": spec.name,
        "datatype": datatype(spec.dtype),
        "shape": [-1 if d is None else d for d in spec.shape],
    }


class InferenceService:
    """One model behind the KServe v2 protocol; ``start``/``stop`` run inside the server's event loop."""

    def __init__(
        self,
        model: Model,
        name: str,
        *,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        max_batch: int | None = None,
        batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in {".", ".."}:
            raise InputError(f"model name {name!r}: use letters, digits, '_', '.' and '-'")
        if max_concurrency < 1:
            raise InputError(f"max_concurrency {max_concurrency} must be at least 1")
        if max_body_bytes < 1:
            raise InputError(f"max_body_bytes {max_body_bytes} must be positive")
        if batch_timeout_ms < 0 or not math.isfinite(batch_timeout_ms):
            raise InputError(f"batch_timeout_ms {batch_timeout_ms} must be a non-negative number")
        if max_batch is not None:
            low, high = model.input_spec.batch_range
            if max_batch < 1:
                raise InputError(f"max_batch {max_batch} must be at least 1")
            if max_batch > 1 and (low == high or (high is not None and max_batch > high)):
                raise InputError(
                    f"max_batch {max_batch}: {model.path.name} takes batches of "
                    f"{low if low == high else f'{low}..{high}'} ({model.input_spec.describe()})"
                )
        self.model, self.name = model, name
        self.max_concurrency, self.max_batch = max_concurrency, max_batch
        self.batch_timeout_s = batch_timeout_ms / 1000
        self.max_body_bytes = max_body_bytes
        self.metrics = Metrics(name)
        self.ready = False
        self._slots: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._batcher: DynamicBatcher | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self.max_concurrency)
        self._executor = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="scconv-infer")
        if self.max_batch is not None and self.max_batch > 1:
            self._batcher = DynamicBatcher(self._execute, self._slots, self.max_batch, self.batch_timeout_s)
            self._batcher.start()
        self.ready = True
        logger.info(
            "serving %s (%s) as %r: concurrency %d, %s",
            self.model.path.name,
            self.model.platform,
            self.name,
            self.max_concurrency,
            f"dynamic batching up to {self.max_batch} rows, {self.batch_timeout_s * 1000:g} ms"
            if self._batcher
            else "no dynamic batching",
        )

    async def stop(self) -> None:
        """After the server has drained its connections: stop batching, join the workers."""
        self.ready = False
        if self._batcher is not None:
            await self._batcher.stop()
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown)

    # -- inference ------------------------------------------------------------------------------
    async def _execute(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.metrics.batch_rows.observe(len(x))
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.model.infer, x)

    async def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self._batcher is not None:
            return await self._batcher.submit(x)
        async with self._slots:
            return await self._execute(x)

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self.name:
            raise RequestError(f"model {name!r} is not served here (this server serves {self.name!r})", 404)
        if version not in (None, "", VERSION):
            raise RequestError(f"model {name!r} has no version {version!r} (versions: {VERSION})", 404)

    def _input(self, request: InferRequest) -> np.ndarray:
        """The request's input, checked against the model (before anything runs)."""
        spec = self.model.input_spec
        if set(request.inputs) != {spec.name}:
            raise RequestError(
                f"the model takes one input {spec.name!r}, got {', '.join(map(repr, request.inputs))}"
            )
        names = [s.name for s in self.model.output_specs]
        unknown = [name for name in request.outputs or () if name not in names]
        if unknown:
            raise RequestError(
                f"output(s) {', '.join(map(repr, unknown))} unknown; the model has {', '.join(names)}"
            )
        return self.model.validate(request.inputs[spec.name])

    async def infer(
        self,
        name: str,
        version: str | None,
        headers: Mapping[str, str],
        read_body: Callable[[], Awaitable[bytes]],
    ) -> Reply:
        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            self._check_model(name, version)
            if not self.ready:
                raise RequestError(f"model {self.name!r} is not ready", 503)
            request = parse_infer_request(await read_body(), headers.get(HEADER_LENGTH.lower()))
            outputs = await self._run(self._input(request))
            body, reply_headers = encode_infer_response(self.name, VERSION, request, outputs)
            reply = Reply(200, body, reply_headers)
        except InputError as err:
            reply = error_reply(str(err), getattr(err, "status", 400))
        except Exception as err:
            logger.exception("inference failed")
            reply = error_reply(f"inference failed: {err}", 500)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.count(reply.status)
        self.metrics.latency.observe(time.perf_counter() - start)
        return reply

    # -- metadata and health --------------------------------------------------------------------
    def server_metadata(self) -> Reply:
        return json_reply(
            {"name": "scconv-serve", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    def live(self) -> Reply:
        return Reply(200)

    def server_ready(self) -> Reply:
        return Reply(200 if self.ready else 503)

    def model_ready(self, name: str, version: str | None = None) -> Reply:
        try:
            self._check_model(name, version)
        except RequestError as err:
            return error_reply(str(err), err.status)
        return Reply(200 if self.ready else 503)

    def model_metadata(self, name: str, version: str | None = None) -> Reply:
        try:
            self._check_model(name, version)
        except RequestError as err:
            return error_reply(str(err), err.status)
        return json_reply(
            {
                "name": self.name,
                "versions": [VERSION],
                "platform": self.model.platform,
                "inputs": [_tensor_metadata(self.model.input_spec)],
                "outputs": [_tensor_metadata(s) for s in self.model.output_specs],
            }
        )

    def prometheus(self) -> Reply:
        body, content_type = self.metrics.render()
        return Reply(200, body, {"content-type": content_type})
