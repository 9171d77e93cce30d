"""``scconv-verify``: an ONNX artefact against its golden data in ONNX Runtime (argument parsing only)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from ..stages import Stages
from ._common import EXIT_CHECK_FAILED, EXIT_OK, add_verbosity, run, setup_logging

PROG = "scconv-verify"
EXAMPLES = """examples:
  scconv-verify build/digits.onnx                        # against build/digits.golden.npz
  scconv-verify build/digits.fp16.onnx --golden build/digits.golden.npz
  scconv-verify model.int8.onnx --json > verification.json

Every golden sample is compared, with PyTorch's gate decisions fed into the artefact; flips of
its own decisions are counted and classified. Tolerances default to the artefact's precision
(README, "Tolerances"). Needs no PyTorch.

exit codes: 0 verified, 1 mismatch, 2 bad input (unreadable file, golden data of another model),
3 internal error."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Verify an exported ONNX artefact (FP32, FP16 or INT8) against golden PyTorch data.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("artefact", metavar="MODEL.onnx", help="an ONNX file written by scconv-export")
    p.add_argument("--golden", metavar="FILE", help="golden data (default: MODEL.golden.npz beside it)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default: the precision's)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: the precision's)")
    p.add_argument(
        "--gate-atol", type=float, help="FP32: largest mean gate-value error of a block (default 1e-6)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verbosity(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)

    def command() -> int:
        from ..verify import verify_file
        from ._progress import StageProgress

        progress = StageProgress.for_terminal(args.quiet, args.json)
        stages = Stages(progress)
        with (
            progress if progress is not None else contextlib.nullcontext(),
            stages.stage("verify") as advance,
        ):
            result, golden_path = verify_file(
                args.artefact,
                args.golden,
                rtol=args.rtol,
                atol=args.atol,
                gate_atol=args.gate_atol,
                progress=advance,
            )
        if args.json:
            print(
                json.dumps(
                    {"artefact": args.artefact, "golden": str(golden_path), **result.to_dict()}, indent=2
                )
            )
        else:
            print(f"{args.artefact} against {golden_path}:")
            print(result)
        return EXIT_OK if result.passed else EXIT_CHECK_FAILED

    return run(command, PROG, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
