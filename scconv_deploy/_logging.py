"""The package logger. Library modules log under ``scconv_deploy.<module>``; the CLI sets verbosity."""

from __future__ import annotations

import logging

PACKAGE_LOGGER = logging.getLogger("scconv_deploy")
PACKAGE_LOGGER.addHandler(logging.NullHandler())
