"""``scconv-triton``: a model to a Triton Inference Server model repository (argument parsing only)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..triton import write_triton_repository
from ._common import EXIT_OK, add_verbosity, run, setup_logging

PROG = "scconv-triton"

EXAMPLES = """examples:
  scconv-triton build/digits.onnx model_repository/                 # model_repository/digits/...
  scconv-triton build/digits.onnx repo/ --name digits --max-batch-size 32 --instances 2
  scconv-triton build/digits.plan repo/ --overwrite
  tritonserver --model-repository=repo/

exit codes: 0 written, 2 bad input (nothing is written)."""


def _count(text: str, least: int = 0) -> int:
    value = int(text)
    if value < least:
        raise argparse.ArgumentTypeError(f"{text} is less than {least}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Write DIR/NAME/config.pbtxt and DIR/NAME/1/model.onnx|model.plan for Triton, with "
        "inputs, outputs and batch size from the model; the config is checked with Triton's schema.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL.onnx|MODEL.plan", help="the model file")
    p.add_argument("directory", metavar="DIR", help="the model repository (created if missing)")
    p.add_argument("--name", help="model name (default: the file name without suffix)")
    p.add_argument(
        "--max-batch-size",
        type=_count,
        metavar="N",
        help="Triton's max_batch_size; 0 disables batching (default: the engine profile's maximum, "
        "8 for a dynamic-batch ONNX, 0 for a fixed batch)",
    )
    p.add_argument(
        "--dynamic-batching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add a dynamic_batching block when max_batch_size > 0 (default: on)",
    )
    p.add_argument(
        "--instances",
        type=lambda t: _count(t, 1),
        default=1,
        metavar="N",
        help="model instances (default: 1)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace DIR/NAME if it exists")
    add_verbosity(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)

    def command() -> int:
        repo = write_triton_repository(
            args.model,
            args.directory,
            name=args.name,
            max_batch_size=args.max_batch_size,
            dynamic_batching=args.dynamic_batching,
            instance_count=args.instances,
            overwrite=args.overwrite,
        )
        checked = "checked with Triton's schema" if repo.schema_checked else "NOT checked (no tritonclient)"
        print(f"{repo.model_dir}: config.pbtxt ({checked}), {repo.model_path.relative_to(repo.model_dir)}")
        return EXIT_OK

    return run(command, PROG)


if __name__ == "__main__":
    sys.exit(main())
