"""``scconv-trt``: TensorRT commands. Argument parsing only; ``scconv_deploy.lint`` and ``scconv_deploy.trt``
do the work.

One function adds each subcommand's parser and sets ``check`` (argument checks argparse cannot
express; errors exit 2) and ``func`` (runs the command, returns the exit code). TensorRT is
imported only by the commands that need it: without it (or without a CUDA device) they exit 2
with one line; ``lint``, ``build --dry-run`` and ``bench`` of an ONNX file run anywhere.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import EngineError
from ..golden import golden_beside
from ..lint import lint_onnx
from ..lint.support import MAJORS
from ..trt import (
    INSTALL_TRT,
    BuildPlan,
    bench_onnx,
    bench_plan,
    inspect_plan,
    require_trt_gpu,
    verify_plan,
)
from ..trt.pipeline import build_and_verify, prepare_check
from ..trt.plan import parse_size
from ..trt.profile import parse_hw, parse_range, parse_shapes
from ..trt.sidecar import HARDWARE_LEVELS
from ._common import EXIT_CHECK_FAILED, EXIT_OK, add_verbosity, run, setup_logging

PROG = "scconv-trt"
logger = logging.getLogger("scconv_deploy.cli.trt")

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


# ---- build -------------------------------------------------------------------------------------------

_BUILD_EXAMPLES = """\
exit status: 0 built and verified (--dry-run: lint clean), 1 lint errors or verification failed
(a failed engine is still written, for inspection), 2 bad input or no TensorRT/CUDA (one line)

the verification twin: MODEL.verify.plan, built beside the engine from the same ONNX with every SRU
gate decision fed in as an input (same precision and builder settings), is run with PyTorch's
decisions, so the check compares every golden sample even where each holds a gate tie; it costs a
second build. --no-twin skips it; --no-check builds neither the twin nor runs the check.

examples:
  scconv-trt build build/digits.onnx --dry-run           # the plans, profiles and sidecars; no TensorRT
  scconv-trt build build/digits.onnx                     # build/digits.plan + digits.verify.plan, checked
  scconv-trt build model.onnx --batch 1:8:32 --hw 224:224:320 --timing-cache build/tactics.cache
  scconv-trt build model.onnx --shapes input:1x3x224x224:8x3x224x224:32x3x320x320 -o model.b32.plan
  scconv-trt build build/digits.onnx --debug-gates -o build/digits.gates.plan  # gate flips counted exactly
  scconv-trt build model.fp16.onnx --debug-gates --golden model.golden.npz
"""


def _parsed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` from a parser raising EngineError."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except EngineError as err:
            raise argparse.ArgumentTypeError(str(err)) from err

    return convert


def _check_build(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.no_check and args.golden is not None:
        parser.error("--golden and --no-check contradict each other")


def _lint_target(wanted: int | None, installed: str | None) -> tuple[int, str | None]:
    """The TensorRT the lint checks for: the installed release when there is one, else ``--trt`` (else 10)."""
    if installed is None:
        return wanted or MAJORS[0], None
    major = int(installed.split(".")[0])
    if wanted is not None and wanted != major:
        raise EngineError(
            f"--trt {wanted}, but TensorRT {installed} is installed: drop --trt or install {wanted}.x"
        )
    return (major, installed) if major in MAJORS else (MAJORS[-1], None)


def _golden_for(args: argparse.Namespace) -> Path | None:
    if args.no_check:
        return None
    return Path(args.golden) if args.golden is not None else golden_beside(Path(args.model))


def _dry_run(plan: BuildPlan, golden_path: Path | None, twin: bool) -> None:
    print(plan)
    if golden_path is None:
        print("no check (--no-check): no verification twin")
    elif not golden_path.is_file():
        print(f"check against {golden_path} (MISSING: pass --golden FILE or --no-check)")
        print("verification twin: its mask profiles come from the golden data (missing)")
    else:
        print(prepare_check(plan, golden_path, twin=twin))


def _run_build(args: argparse.Namespace) -> int:
    installed = None if args.dry_run else require_trt_gpu().version
    major, version = _lint_target(args.trt, installed)
    plan = BuildPlan.from_onnx(
        args.model,
        args.output,
        batch=args.batch,
        hw=args.hw,
        shapes=parse_shapes(args.shapes) if args.shapes else None,
        workspace=args.workspace,
        timing_cache=args.timing_cache,
        version_compatible=args.version_compatible,
        hardware_compatibility=args.hardware_compatibility,
        builder_opt_level=args.builder_opt_level,
        debug_gates=args.debug_gates,
        trt_major=major,
        trt_version=version,
    )
    golden_path = _golden_for(args)
    if args.dry_run:
        _dry_run(plan, golden_path, twin=not args.no_twin)
        return EXIT_OK if plan.lint.ok else EXIT_CHECK_FAILED
    if not plan.lint.ok:
        print(plan.lint)
        print(
            f"not built: the lint found errors TensorRT {major} rejects or computes wrongly (see the fixes)"
        )
        return EXIT_CHECK_FAILED
    logger.info("%s", plan)
    result = build_and_verify(
        plan,
        golden_path,
        twin=not args.no_twin,
        rtol=args.rtol,
        atol=args.atol,
        progress=None if args.quiet else sys.stderr,
    )
    print(result)
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def _add_tolerances(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rtol",
        type=float,
        help="relative tolerance (default by ONNX precision: FP32 1e-3, FP16 1e-2, INT8 0.1)",
    )
    parser.add_argument(
        "--atol",
        type=float,
        help="absolute tolerance (default by ONNX precision: FP32 1e-4, FP16 1e-2, INT8 0.1)",
    )


def add_build(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "build",
        parents=[common],
        help="build a TensorRT engine from an ONNX file and check it against PyTorch",
        description="Build a strongly typed TensorRT engine (precision comes from the ONNX: FP32, FP16 "
        "or Q/DQ INT8) with one optimisation profile, write MODEL.plan and MODEL.plan.json (TensorRT "
        "release, GPU, profiles, ONNX hash and metadata), build its verification twin MODEL.verify.plan, "
        "and verify both against the golden data scconv-export wrote beside the ONNX.",
        epilog=_BUILD_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL.onnx", help="the ONNX file (from scconv-export)")
    parser.add_argument("-o", "--output", metavar="MODEL.plan", help="the engine (default: beside the ONNX)")
    shapes = parser.add_argument_group("profile (static dimensions stay as the ONNX has them)")
    shapes.add_argument(
        "--batch",
        type=_parsed(parse_range),
        metavar="MIN:OPT:MAX",
        help="batch range of every input (default for a dynamic batch: 1:1:8; one number: fixed)",
    )
    shapes.add_argument(
        "--hw",
        type=_parsed(parse_hw),
        metavar="MIN:OPT:MAX",
        help="height and width of 4-D inputs: 32:64:128 or 32x48:64x64:128x96 (default: the export shape)",
    )
    shapes.add_argument(
        "--shapes",
        action="append",
        metavar="NAME:MIN:OPT:MAX",
        help="whole shapes of one input, e.g. input:1x1x32x32:4x1x32x32:8x1x32x32 (repeatable)",
    )
    builder = parser.add_argument_group("builder")
    builder.add_argument(
        "--workspace", type=_parsed(parse_size), metavar="SIZE", help="workspace limit, e.g. 4G or 512M"
    )
    builder.add_argument(
        "--timing-cache", metavar="FILE", help="reuse tactic timings from FILE and add this build's to it"
    )
    builder.add_argument(
        "--version-compatible",
        action="store_true",
        help="build an engine that later TensorRT releases also run (it embeds a lean runtime)",
    )
    builder.add_argument(
        "--hardware-compatibility",
        choices=list(HARDWARE_LEVELS),
        default="none",
        help="GPUs the engine runs on: none (TensorRT's default: this compute capability), same-cc, "
        "ampere+ (any sm_80+ GPU, fewer tactics)",
    )
    builder.add_argument(
        "--builder-opt-level", type=int, choices=range(6), metavar="N", help="0-5 (TensorRT's default: 3)"
    )
    builder.add_argument(
        "--debug-gates",
        action="store_true",
        help="expose the SRU gate values as outputs of the deployment engine (a debug engine: extra "
        "outputs, possibly other fusions), so its own gate decisions are counted and every sample whose "
        "decisions agree with PyTorch's is compared as deployed; the verification twin compares every "
        "sample either way",
    )
    builder.add_argument(
        "--trt",
        type=int,
        choices=MAJORS,
        help="TensorRT major for --dry-run's lint (a build uses the installed one)",
    )
    check = parser.add_argument_group("check")
    check.add_argument(
        "--golden", metavar="FILE", help="golden data (default: MODEL.golden.npz beside the ONNX)"
    )
    check.add_argument(
        "--no-check", action="store_true", help="do not verify the engine (and build no verification twin)"
    )
    check.add_argument(
        "--no-twin",
        action="store_true",
        help="build no verification twin (MODEL.verify.plan): the check then holds only the samples the "
        "deployment engine allows (none where every sample holds a gate tie: it then fails)",
    )
    _add_tolerances(check)
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan, lint and sidecar; build nothing"
    )
    parser.set_defaults(check=functools.partial(_check_build, parser), func=_run_build)


# ---- verify, bench, inspect ---------------------------------------------------------------------------

_VERIFY_EXAMPLES = """\
exit status: 0 passed, 1 mismatch (a gate flipped away from a tie, or output error beyond
tolerance), 2 bad input, another TensorRT/GPU than the build's, or no TensorRT/CUDA

examples:
  scconv-trt verify build/digits.plan        # with build/digits.verify.plan; golden data beside either
  scconv-trt verify model.plan --golden model.golden.npz --rtol 1e-2
"""

_BENCH_EXAMPLES = """\
examples:
  scconv-trt bench build/digits.plan --batch-sizes 1,8 --json bench.json   # TensorRT, CUDA events
  scconv-trt bench build/digits.onnx --batch-sizes 1,8,32 --iterations 50  # ONNX Runtime, CPU
"""

_INSPECT_EXAMPLES = """\
examples:
  scconv-trt inspect build/digits.plan            # layer types and precisions, profile, sidecar
  scconv-trt inspect build/digits.plan --layers   # every layer with its tactic
"""


def _add_compat_override(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-compat-check",
        action="store_true",
        help="load a plan whose sidecar names another TensorRT release or compute capability "
        "(a warning instead of a refusal; TensorRT decides)",
    )


def _no_check(args: argparse.Namespace) -> None:
    """No argument checks beyond argparse's."""


def _run_verify(args: argparse.Namespace) -> int:
    result, golden = verify_plan(
        args.plan,
        args.golden,
        rtol=args.rtol,
        atol=args.atol,
        check_compatibility=not args.no_compat_check,
    )
    print(f"{args.plan} against {golden}:")
    print(result)
    return EXIT_OK if result.passed else EXIT_CHECK_FAILED


def add_verify(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "verify",
        parents=[common],
        help="check an engine against golden PyTorch data (gate decisions included)",
        description="Run an engine on golden inputs and compare with PyTorch. With its verification "
        "twin beside it (MODEL.verify.plan, written by scconv-trt build), the twin runs with PyTorch's "
        "gate decisions fed in and every sample is compared. The engine itself is compared where its "
        "decisions agree with PyTorch's (built --debug-gates: counted exactly) or, without gate outputs, "
        "on the samples holding no gate tie.",
        epilog=_VERIFY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("plan", metavar="MODEL.plan", help="the engine (its MODEL.plan.json beside it)")
    parser.add_argument(
        "--golden", metavar="FILE", help="golden data (default: beside the plan, else the ONNX)"
    )
    _add_tolerances(parser)
    _add_compat_override(parser)
    parser.set_defaults(check=_no_check, func=_run_verify)


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(p) for p in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct positive sizes like 1,8")
    return sizes


def _run_bench(args: argparse.Namespace) -> int:
    if Path(args.model).suffix.lower() == ".onnx":
        result = bench_onnx(args.model, args.batch_sizes, iterations=args.iterations, warmup=args.warmup)
    else:
        result = bench_plan(
            args.model,
            args.batch_sizes,
            iterations=args.iterations,
            warmup=args.warmup,
            check_compatibility=not args.no_compat_check,
        )
    print(result)
    if args.json:
        result.write_json(args.json)
        print(f"wrote {args.json}")
    return EXIT_OK


def add_bench(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "bench",
        parents=[common],
        help="latency percentiles and throughput over batch sizes (engine or ONNX)",
        description="Time an engine (CUDA events, TensorRT) or an ONNX file (wall clock, ONNX Runtime "
        "on the CPU): warm-up, then the batch sizes take turns for --iterations rounds.",
        epilog=_BENCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL.plan|MODEL.onnx", help="an engine, or an ONNX file")
    parser.add_argument(
        "--batch-sizes", type=_batch_sizes, default=[1, 8], metavar="N,N", help="default: 1,8"
    )
    parser.add_argument(
        "--iterations", type=int, default=100, help="timed runs per batch size (default: 100)"
    )
    parser.add_argument(
        "--warmup", type=int, default=10, help="untimed runs per batch size first (default: 10)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    _add_compat_override(parser)
    parser.set_defaults(check=_no_check, func=_run_bench)


def _run_inspect(args: argparse.Namespace) -> int:
    report = inspect_plan(args.plan, check_compatibility=not args.no_compat_check)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.describe(layers=args.layers))
    return EXIT_OK


def add_inspect(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "inspect",
        parents=[common],
        help="layers, precisions and profile of an engine, and what its sidecar records",
        description="Describe an engine with TensorRT's engine inspector (layer types, the precision "
        "of each layer's outputs, tactics), its optimisation profile and its sidecar.",
        epilog=_INSPECT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("plan", metavar="MODEL.plan", help="the engine")
    parser.add_argument("--layers", action="store_true", help="list every layer")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_compat_override(parser)
    parser.set_defaults(check=_no_check, func=_run_inspect)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_verbosity(common)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="TensorRT tools for SCConv networks: lint an ONNX file offline, build engines checked "
        "against PyTorch, verify, benchmark and inspect them.",
        epilog="examples:\n"
        "  scconv-trt lint model.onnx --trt-version 10.8\n"
        "  scconv-trt build model.onnx --dry-run\n"
        "  scconv-trt build model.onnx && scconv-trt bench model.plan --batch-sizes 1,8\n"
        "\nTensorRT: " + INSTALL_TRT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_lint, add_build, add_verify, add_bench, add_inspect):
        add(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.check(args)
    setup_logging(args)
    return run(lambda: args.func(args), PROG)


if __name__ == "__main__":
    sys.exit(main())
