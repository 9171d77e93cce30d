"""``scconv-trt``: TensorRT commands. Argument parsing only; ``scconv_deploy.lint`` does the work.

One function adds each subcommand's parser and sets ``check`` (argument checks argparse cannot
express; errors exit 2) and ``func`` (runs the command, returns the exit code); ``build``, ``verify``,
``bench`` and ``inspect`` are added the same way.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from collections.abc import Sequence

from ..lint import lint_onnx
from ..lint.support import MAJORS
from ._common import EXIT_CHECK_FAILED, EXIT_OK, add_verbosity, run, setup_logging

PROG = "scconv-trt"

_LINT_EXAMPLES = """\
exit status: 0 no errors (warnings allowed), 1 errors found, 2 unreadable model or bad arguments

examples:
  scconv-trt lint model.onnx                      # TensorRT 10, newest 10.x release
  scconv-trt lint model.onnx --trt-version 10.8   # a known release: version-specific checks
  scconv-trt lint model.onnx --trt 11 --json > lint.json
"""


def _version(text: str) -> str:
    if not re.fullmatch(r"\d+\.\d+(\.\d+)*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a TensorRT version like 10.8")
    return text


def _check_lint(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Settle the target: ``--trt``, else the major of ``--trt-version``, else 10."""
    major = None if args.trt_version is None else int(args.trt_version.split(".")[0])
    if major is not None and major not in MAJORS:
        parser.error(
            f"--trt-version {args.trt_version}: the lint knows TensorRT {' and '.join(map(str, MAJORS))}"
        )
    if args.trt is not None and major is not None and major != args.trt:
        parser.error(f"--trt-version {args.trt_version} is not a TensorRT {args.trt} release")
    args.trt_major = args.trt or major or MAJORS[0]


def _run_lint(args: argparse.Namespace) -> int:
    report = lint_onnx(args.model, trt_major=args.trt_major, trt_version=args.trt_version)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def add_lint(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "lint",
        parents=[common],
        help="check an ONNX model offline for what TensorRT rejects or computes wrongly",
        description="Check an ONNX model, without TensorRT or a GPU, for what TensorRT's ONNX parser "
        "rejects (errors) or takes at a cost (warnings).",
        epilog=_LINT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", metavar="MODEL.onnx", help="the ONNX file (external data is looked for beside it)"
    )
    parser.add_argument(
        "--trt",
        type=int,
        choices=MAJORS,
        help="TensorRT major version (default: that of --trt-version, else 10)",
    )
    parser.add_argument("--trt-version", type=_version, metavar="X.Y", help="the exact release, e.g. 10.8")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(check=functools.partial(_check_lint, parser), func=_run_lint)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_verbosity(common)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="TensorRT tools for SCConv networks.",
        epilog="example:\n  scconv-trt lint model.onnx --trt-version 10.8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_lint(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.check(args)
    setup_logging(args)
    return run(lambda: args.func(args), PROG)
