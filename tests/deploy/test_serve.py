"""scconv-serve: the KServe v2 / Triton HTTP protocol over the runtime, driven by the real tritonclient."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import onnx
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from scconv_deploy.cli.serve import main
from scconv_deploy.runtime import InputError, Model, TensorSpec, load
from scconv_deploy.serve import BackgroundServer, create_app
from scconv_deploy.serve.batching import DynamicBatcher

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "scconv_cnn_digits_seed.pt"


@pytest.fixture(scope="module")
def server(model):
    with BackgroundServer(create_app(model, "demo")) as running:
        yield running


@pytest.fixture(scope="module")
def batching_server(model):
    app = create_app(model, "demo", max_batch=8, batch_timeout_ms=20, max_body_bytes=64 * 1024)
    with BackgroundServer(app) as running:
        yield running


def _client(server: BackgroundServer) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(urlsplit(server.url).netloc, concurrency=1)


def _request(server, method: str, path: str, body: bytes | dict | None = None, headers=None):
    """(status, parsed JSON or raw bytes, headers) of one plain HTTP request."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    is_json = response.getheader("content-type", "").startswith("application/json")
    return response.status, json.loads(raw) if is_json and raw else raw, dict(response.getheaders())


def _inputs(x: np.ndarray, binary: bool = True) -> list[triton_http.InferInput]:
    tensor = triton_http.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return [tensor]


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 32, 32), dtype=np.float32)


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_health_and_metadata(server):
    client = _client(server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("demo")
    assert not client.is_model_ready("other")
    assert client.get_model_metadata("demo") == {
        "name": "demo",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 32, 32]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}],
    }
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_inference_matches_the_runtime(server, model, binary):
    client, x = _client(server), _x(3, seed=1)
    outputs = [triton_http.InferRequestedOutput("output", binary_data=binary)]
    result = client.infer("demo", _inputs(x, binary), outputs=outputs, request_id="req-7")
    np.testing.assert_array_equal(result.as_numpy("output"), model(x))
    assert result.get_response()["id"] == "req-7" and result.get_response()["model_name"] == "demo"
    versioned = client.infer("demo", _inputs(x, binary), model_version="1")
    np.testing.assert_array_equal(versioned.as_numpy("output"), model(x))
    client.close()


def test_tritonclient_sees_errors_with_their_status(server):
    client = _client(server)
    with pytest.raises(InferenceServerException, match="model 'nope' is not served here") as info:
        client.infer("nope", _inputs(_x(1)))
    assert info.value.status() == "404"
    tensor = triton_http.InferInput("input", [1, 1, 32, 32], "FP64")
    tensor.set_data_from_numpy(np.zeros((1, 1, 32, 32)))
    with pytest.raises(
        InferenceServerException, match=r"expected float32 \(\?, 1, 32, 32\), got float64"
    ) as info:
        client.infer("demo", [tensor])
    assert info.value.status() == "400"
    client.close()


def _json_body(shape=(1, 1, 32, 32), datatype="FP32", name="input", data=None, **extra) -> dict:
    count = int(np.prod(shape))
    tensor = {
        "name": name,
        "shape": list(shape),
        "datatype": datatype,
        "data": [0.0] * count if data is None else data,
    }
    return {"inputs": [tensor], **extra}


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "reason"),
    [
        ("/v2/models/demo/infer", b'{"inputs": [', {}, 400, "not valid JSON"),
        ("/v2/models/demo/infer", b"[1, 2]", {}, 400, "must be a JSON object"),
        ("/v2/models/demo/infer", {"inputs": []}, {}, 400, "'inputs' is empty"),
        ("/v2/models/demo/infer", _json_body(shape=(1, 2, 32, 32)), {}, 400, "got float32 (1, 2, 32, 32)"),
        ("/v2/models/demo/infer", _json_body(data=[1.0, 2.0]), {}, 400, "needs 1024 values, 'data' has 2"),
        ("/v2/models/demo/infer", _json_body(datatype="BYTES"), {}, 400, "datatype 'BYTES' is not supported"),
        ("/v2/models/demo/infer", _json_body(shape=(1, -1)), {}, 400, "non-negative integers"),
        ("/v2/models/demo/infer", _json_body(data=["a"] * 1024), {}, 400, "not a (nested) list of FP32"),
        ("/v2/models/demo/infer", _json_body(name="image"), {}, 400, "takes one input 'input', got 'image'"),
        ("/v2/models/demo/infer", _json_body(outputs=[{"name": "logits"}]), {}, 400, "'logits' unknown"),
        (
            "/v2/models/demo/infer",
            _json_body(outputs=[{"name": "output", "parameters": {"classification": 3}}]),
            {},
            400,
            "classification extension is not supported",
        ),
        (
            "/v2/models/demo/infer",
            _json_body(),
            {"Inference-Header-Content-Length": "99999"},
            400,
            "within the body",
        ),
        ("/v2/models/nope/infer", _json_body(), {}, 404, "model 'nope' is not served here"),
        ("/v2/models/demo/versions/2/infer", _json_body(), {}, 404, "has no version '2'"),
        ("/v2/models/nope", None, {}, 404, "not served here"),
        ("/v2/nothing", None, {}, 404, "Not Found"),
    ],
)
def test_bad_requests_get_a_status_and_a_reason(server, path, body, headers, status, reason):
    code, payload, _ = _request(server, "GET" if body is None else "POST", path, body, headers)
    assert code == status and reason in payload["error"]


def test_binary_tensors_on_the_wire(server, model):
    x = _x(2, seed=4)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 1, 32, 32],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
        }
    ).encode()
    status, body, headers = _request(
        server,
        "POST",
        "/v2/models/demo/infer",
        header + x.tobytes(),
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 200
    split = int(headers["inference-header-content-length"])
    response = json.loads(body[:split])
    assert response["outputs"][0]["parameters"]["binary_data_size"] == 2 * 10 * 4
    np.testing.assert_array_equal(np.frombuffer(body[split:], np.float32).reshape(2, 10), model(x))
    short = header.replace(str(x.nbytes).encode(), b"16")
    status, payload, _ = _request(
        server,
        "POST",
        "/v2/models/demo/infer",
        short + x.tobytes(),
        {"Inference-Header-Content-Length": str(len(short))},
    )
    assert status == 400 and "binary_data_size 16" in payload["error"]


def test_a_body_over_the_limit_is_refused(batching_server):
    status, payload, _ = _request(
        batching_server, "POST", "/v2/models/demo/infer", _json_body(shape=(16, 1, 32, 32))
    )
    assert status == 413 and "exceeds the limit of 65536" in payload["error"]


def test_metrics_count_requests_by_status(server):
    client = _client(server)
    before = _request(server, "GET", "/metrics")[1].decode()
    client.infer("demo", _inputs(_x(1)))
    _request(server, "POST", "/v2/models/demo/infer", b"{")
    status, text, headers = _request(server, "GET", "/metrics")
    text = text.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for code in ("200", "400"):
        name = f'scconv_infer_requests_total{{model="demo",status="{code}"}}'
        assert _metric(text, name) == _metric(before, name) + 1
    assert _metric(text, 'scconv_infer_request_duration_seconds_count{model="demo"}') >= 2
    assert 'scconv_infer_in_flight{model="demo"}' in text
    client.close()


def test_dynamic_batching_runs_concurrent_requests_together(batching_server, model):
    inputs = [_x(1 if i % 4 else 3, seed=10 + i) for i in range(16)]
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(inputs))

    def send(i: int) -> None:
        client = _client(batching_server)
        start.wait()
        results[i] = client.infer("demo", _inputs(inputs[i])).as_numpy("output")
        client.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for i, x in enumerate(inputs):
        np.testing.assert_allclose(results[i], model(x), rtol=1e-5, atol=1e-4)
    text = _request(batching_server, "GET", "/metrics")[1].decode()
    executions = _metric(text, 'scconv_execution_batch_rows_count{model="demo"}')
    assert _metric(text, 'scconv_execution_batch_rows_sum{model="demo"}') == sum(len(x) for x in inputs)
    assert executions < len(inputs)  # requests shared executions


def test_batcher_packs_rows_up_to_the_limit_and_keeps_shapes_apart():
    seen: list[tuple[int, ...]] = []

    async def execute(x: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(x.shape)
        if x.shape[-1] == 7:
            raise RuntimeError("boom")
        return {"y": x * 2}

    async def scenario():
        batcher = DynamicBatcher(execute, asyncio.Semaphore(1), max_batch=4, timeout_s=0.05)
        batcher.start()
        xs = [np.full((1, 2), i, np.float32) for i in range(5)] + [
            np.ones((6, 2), np.float32),
            np.ones((1, 3)),
        ]
        results = await asyncio.gather(*(batcher.submit(x) for x in xs))
        failed = await asyncio.gather(batcher.submit(np.ones((1, 7))), return_exceptions=True)
        await batcher.stop()
        return xs, results, failed

    xs, results, failed = asyncio.run(scenario())
    for x, result in zip(xs, results, strict=True):
        np.testing.assert_array_equal(result["y"], x * 2)
    assert seen[0] == (4, 2)  # four one-row requests together, never more than max_batch rows
    assert (6, 2) in seen and (1, 3) in seen  # too large: alone; another row shape: its own execution
    assert isinstance(failed[0], RuntimeError) and str(failed[0]) == "boom"


class _SlowModel(Model):
    """Doubles its input after a delay, recording how many calls overlap."""

    platform = "onnxruntime_onnx"

    def __init__(self, delay: float) -> None:
        spec = TensorSpec("input", np.dtype(np.float32), (None, 4))
        super().__init__(Path("slow.onnx"), spec, [TensorSpec("output", np.dtype(np.float32), (None, 4))], {})
        self.delay, self.active, self.most_active = delay, 0, 0
        self.started = threading.Event()
        self._lock = threading.Lock()

    def _infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        self.started.set()
        time.sleep(self.delay)
        with self._lock:
            self.active -= 1
        return {"output": x * 2}

    def _close(self) -> None:
        pass


def _slow_body(value: float = 1.0) -> dict:
    return {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [value] * 4}]}


def test_concurrency_is_bounded_and_shutdown_drains_requests_in_flight():
    slow = _SlowModel(delay=0.3)
    running = BackgroundServer(create_app(slow, "slow", max_concurrency=1))
    replies: list[tuple[int, dict]] = []

    def send() -> None:
        status, payload, _ = _request(running, "POST", "/v2/models/slow/infer", _slow_body())
        replies.append((status, payload))

    with running:
        threads = [threading.Thread(target=send) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert slow.most_active == 1 and [r[0] for r in replies] == [200] * 3
        slow.started.clear()
        late = threading.Thread(target=send)
        late.start()
        assert slow.started.wait(10)
        running.stop()  # as on SIGTERM, while the request is in flight
        late.join(30)
    assert replies[-1][0] == 200 and replies[-1][1]["outputs"][0]["data"] == [2.0] * 4
    with pytest.raises(OSError):
        _request(running, "GET", "/v2/health/live")


def test_options_the_model_cannot_take_are_refused(model, tmp_path):
    graph = onnx.load(model.path)
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    graph.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(graph, tmp_path / "fixed.onnx")
    with (
        load(tmp_path / "fixed.onnx") as fixed,
        pytest.raises(InputError, match=r"max_batch 8: fixed\.onnx takes batches of 1"),
    ):
        create_app(fixed, max_batch=8)
    with pytest.raises(InputError, match="model name 'a/b'"):
        create_app(model, "a/b")
    with pytest.raises(InputError, match="max_concurrency 0"):
        create_app(model, max_concurrency=0)


def test_load_eight_clients_without_errors(server, capsys):
    clients, per_client, deadline = 8, 200, time.monotonic() + 30
    latencies: list[float] = []
    errors: list[Exception] = []
    start = threading.Barrier(clients)

    def client_loop(seed: int) -> None:
        client, x = _client(server), _x(1, seed)
        inputs = _inputs(x)
        start.wait()
        for _ in range(per_client):
            if time.monotonic() > deadline:
                break
            t = time.perf_counter()
            try:
                client.infer("demo", inputs)
            except Exception as err:  # counted, not raised: the assertion below reports them
                errors.append(err)
            latencies.append(time.perf_counter() - t)
        client.close()

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    elapsed = time.perf_counter() - began
    assert not errors, errors[:3]
    assert len(latencies) > 0
    with capsys.disabled():
        print(
            f"\nload: {len(latencies)} requests from {clients} clients in {elapsed:.2f} s: "
            f"{len(latencies) / elapsed:.0f} req/s, p50 {np.percentile(latencies, 50) * 1e3:.1f} ms, "
            f"p99 {np.percentile(latencies, 99) * 1e3:.1f} ms, 0 errors"
        )


def test_cli_serves_until_sigterm(onnx_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "scconv_deploy.cli.serve", str(onnx_path), "--port", "0", "--name", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        found = re.search(r"serving 'demo' at (http://127\.0\.0\.1:\d+)/v2/models/demo", line)
        assert found, (line, proc.poll())
        url = urlsplit(found.group(1))
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request("GET", "/v2/health/ready")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read()
    assert code in (0, -signal.SIGTERM) and "Traceback" not in stderr, stderr


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, onnx_path):
    assert main([str(tmp_path / "missing.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"scconv-serve: error: {tmp_path / 'missing.onnx'}: no such file"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main([str(onnx_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"scconv-serve: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    with pytest.raises(SystemExit) as info:
        main([str(onnx_path), "--batch-timeout-ms", "5"])
    assert info.value.code == 2 and "--batch-timeout-ms needs --max-batch" in capsys.readouterr().err
