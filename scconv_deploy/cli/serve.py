"""``scconv-serve``: a model behind the KServe v2 / Triton HTTP protocol (argument parsing only)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..runtime import DEVICES, load
from ..serve import create_app, run_server
from ..serve.service import DEFAULT_BATCH_TIMEOUT_MS, DEFAULT_CONCURRENCY, DEFAULT_MAX_BODY_BYTES
from ._common import EXIT_OK, add_verbosity, run, setup_logging

PROG = "scconv-serve"

EXAMPLES = """endpoints (KServe v2 / Triton protocol, JSON and binary tensors):
  GET  /v2/health/live, /v2/health/ready, /v2/models/NAME, /v2/models/NAME/ready, /metrics
  POST /v2/models/NAME/infer

examples:
  scconv-serve build/digits.onnx                          # http://127.0.0.1:8000/v2/models/digits
  scconv-serve build/digits.onnx --max-batch 16 --batch-timeout-ms 2
  scconv-serve build/digits.plan --name digits --port 8001
  scconv-serve build/digits.onnx --device cuda --max-batch 32   # TensorRT EP profile: batch 1..32

Stops gracefully on Ctrl-C / SIGTERM: no new connections, requests in flight finish first.
Exit code 2: bad arguments or a model that cannot be loaded (one line on stderr)."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0..65535; 0: any free port)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Serve an ONNX model (ONNX Runtime) or a TensorRT engine over HTTP, speaking the "
        "KServe v2 / Triton inference protocol, with Prometheus metrics.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL.onnx|MODEL.plan", help="the model file")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=_port, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--name", help="model name in the URLs (default: the file name without suffix)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default: auto)")
    p.add_argument(
        "--providers",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        help="ONNX Runtime execution providers in order, comma-separated (default: by --device)",
    )
    p.add_argument(
        "--allow-fallback",
        action="store_true",
        help="serve even when ONNX Runtime did not activate a requested provider (default: refuse)",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="TensorRT EP engine and timing caches (default: ~/.cache/scconv-deploy/onnxruntime-tensorrt)",
    )
    p.add_argument(
        "--no-compat-check",
        action="store_true",
        help="load a .plan whose sidecar names another TensorRT or compute capability (TensorRT decides)",
    )
    p.add_argument(
        "--max-concurrency",
        type=_positive,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"model executions at once; more requests wait (default: {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--max-batch",
        type=_positive,
        metavar="N",
        help="dynamic batching: up to N rows per execution (default: off)",
    )
    p.add_argument(
        "--batch-timeout-ms",
        type=float,
        metavar="T",
        help=f"dynamic batching: wait up to T ms for more requests (default: {DEFAULT_BATCH_TIMEOUT_MS:g})",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=DEFAULT_MAX_BODY_BYTES / 2**20,
        metavar="MB",
        help=f"largest request body accepted (default: {DEFAULT_MAX_BODY_BYTES / 2**20:g})",
    )
    add_verbosity(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_timeout_ms is not None and args.max_batch is None:
        parser.error("--batch-timeout-ms needs --max-batch")
    if args.batch_timeout_ms is not None and args.batch_timeout_ms < 0:
        parser.error("--batch-timeout-ms must not be negative")
    if args.max_body_mb <= 0:
        parser.error("--max-body-mb must be positive")
    setup_logging(args)

    def command() -> int:
        with load(
            args.model,
            device=args.device,
            providers=args.providers,
            allow_fallback=args.allow_fallback,
            max_batch=args.max_batch,
            cache_dir=args.cache_dir,
            check_compatibility=not args.no_compat_check,
        ) as model:
            app = create_app(
                model,
                args.name,
                max_concurrency=args.max_concurrency,
                max_batch=args.max_batch,
                batch_timeout_ms=DEFAULT_BATCH_TIMEOUT_MS
                if args.batch_timeout_ms is None
                else args.batch_timeout_ms,
                max_body_bytes=int(args.max_body_mb * 2**20),
            )
            name = app.state.service.name
            run_server(
                app,
                args.host,
                args.port,
                on_ready=lambda url: print(f"{PROG}: serving {name!r} at {url}/v2/models/{name}", flush=True),
            )
        return EXIT_OK

    return run(command, PROG)


if __name__ == "__main__":
    sys.exit(main())
