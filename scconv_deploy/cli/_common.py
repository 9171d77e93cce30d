"""What every scconv-deploy command shares: logging set-up and turning errors into exit codes.

Exit codes: 0 success, 1 the check the command ran failed (verification, lint errors; files are
kept for inspection), 2 bad input or a missing dependency (one line on stderr, nothing written),
3 internal error (one line naming the step that failed; the traceback with ``-v``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable

from ..errors import InternalError, ScconvDeployError, first_line

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug); tracebacks"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")


def setup_logging(args: argparse.Namespace) -> None:
    level = (
        logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("scconv_deploy").setLevel(level)


def run(command: Callable[[], int], prog: str, verbose: int = 0) -> int:
    """Run ``command`` and turn what it raises into one line on stderr and an exit code.

    A deliberate ``ScconvDeployError`` is bad input (2) unless it is an ``InternalError`` (3);
    anything else escaping is internal too. ``verbose`` > 0 prints the traceback as well.
    """
    try:
        return command()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except InternalError as err:
        _explain(err, verbose)
        print(f"{prog}: {err} (rerun with -v for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    except ScconvDeployError as err:
        _explain(err, verbose)
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:
        _explain(err, verbose)
        detail = f"{type(err).__name__}: {first_line(err)}"
        print(f"{prog}: internal error: {detail} (rerun with -v for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _explain(err: BaseException, verbose: int) -> None:
    if verbose:
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
