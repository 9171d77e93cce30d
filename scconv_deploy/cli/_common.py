"""What every scconv-deploy command shares: logging set-up and turning errors into exit codes.

Exit codes: 0 success, 1 the check the command ran failed (verification, lint errors),
2 bad input or a missing dependency (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from ..errors import ScconvDeployError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")


def setup_logging(args: argparse.Namespace) -> None:
    level = (
        logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("scconv_deploy").setLevel(level)


def run(command: Callable[[], int], prog: str) -> int:
    """Run ``command``; a ScconvDeployError becomes one line on stderr and exit code 2."""
    try:
        return command()
    except ScconvDeployError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
