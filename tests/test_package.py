"""The package imports cleanly, module by module (tests/deploy/test_no_torch.py: its deployment side without
PyTorch)."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import scconv_deploy


def test_every_submodule_imports_in_a_fresh_interpreter_without_ultralytics():
    """Ultralytics (AGPL-3.0) is only ever recognised by structure: no module may import it."""
    names = [m.name for m in pkgutil.walk_packages(scconv_deploy.__path__, "scconv_deploy.")]
    code = (
        "import importlib, sys\n"
        "sys.modules['ultralytics'] = None  # any import of it fails\n"
        "for n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    )
    subprocess.run([sys.executable, "-c", code, *names], check=True)


def test_public_api_is_exported():
    for name in scconv_deploy.__all__:
        assert hasattr(scconv_deploy, name), name
    assert importlib.import_module("scconv_deploy").__version__


def test_console_scripts_name_callables():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    assert set(scripts) == {"scconv-export", "scconv-verify", "scconv-trt", "scconv-serve", "scconv-triton"}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), target
