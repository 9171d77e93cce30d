"""The package imports cleanly, module by module, with only its required dependencies."""

import importlib
import pkgutil
import subprocess
import sys

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


def test_runtime_and_server_import_without_torch():
    """Serving needs ONNX Runtime, not PyTorch: importing them must not load torch (about 1 s)."""
    code = "import sys, scconv_deploy.runtime, scconv_deploy.serve; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
