"""The deployment side runs where PyTorch is not installed: its modules and commands, with torch blocked.

A subprocess puts a finder first on ``sys.meta_path`` that refuses torch, then imports every
deployment-side module and runs the entry points on a small ONNX file: so a stray ``import
torch`` anywhere on that side fails this test even on a machine that has PyTorch.
"""

from __future__ import annotations

import importlib.util
import json
import pkgutil
import subprocess
import sys
import textwrap

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import scconv_deploy

BLOCK_TORCH = """
import importlib.abc, sys

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"import of {name} blocked: the deployment side must not need PyTorch")
        return None

sys.meta_path.insert(0, BlockTorch())
"""

# Packages and modules of the deployment side: everything in them must import without PyTorch.
DEPLOY_PACKAGES = (
    "scconv_deploy.trt",
    "scconv_deploy.runtime",
    "scconv_deploy.serve",
    "scconv_deploy.lint",
    "scconv_deploy.verify",
)
DEPLOY_MODULES = (
    "scconv_deploy",
    "scconv_deploy.deps",
    "scconv_deploy.golden",
    "scconv_deploy.gates",
    "scconv_deploy.ort_cpu",
    "scconv_deploy.stages",
    "scconv_deploy.triton",
    "scconv_deploy.cli.trt",
    "scconv_deploy.cli.serve",
    "scconv_deploy.cli.triton",
    "scconv_deploy.cli.launch",
    "scconv_deploy.cli.verify",
)


def deployment_modules() -> list[str]:
    names = [m for m in DEPLOY_MODULES if importlib.util.find_spec(m) is not None]
    for package in DEPLOY_PACKAGES:
        path = importlib.import_module(package).__path__
        names += [package, *(m.name for m in pkgutil.walk_packages(path, package + "."))]
    return names


def tiny_onnx(path) -> None:
    """A 1×1 convolution with a dynamic batch, N × 4 × 8 × 8, and class names in its metadata."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["output"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, 8, 8])],
        initializer=[numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))


def run_blocked(code: str) -> subprocess.CompletedProcess:
    script = BLOCK_TORCH + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_the_blocker_blocks():
    result = run_blocked("import torch")
    assert result.returncode != 0 and "import of torch blocked" in result.stderr


def test_every_deployment_side_module_imports_without_torch():
    names = deployment_modules()
    assert "scconv_deploy.trt.runner" in names and "scconv_deploy.serve.app" in names
    result = run_blocked(f"import importlib\nfor n in {names!r}:\n    importlib.import_module(n)\n")
    assert result.returncode == 0, result.stderr


def test_the_deployment_entry_points_run_without_torch(tmp_path):
    model = tmp_path / "tiny.onnx"
    tiny_onnx(model)
    code = f"""
    import contextlib, io, json, numpy as np
    from scconv_deploy.cli import trt, triton, serve, launch
    from scconv_deploy import runtime
    from scconv_deploy.serve import create_app

    codes = {{}}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        codes["lint"] = trt.main(["lint", {str(model)!r}])
        codes["dry-run"] = trt.main(["build", {str(model)!r}, "--dry-run", "--no-check"])
        codes["bench-onnx"] = trt.main(["bench", {str(model)!r}, "--batch-sizes", "1,2", "--iterations", "2"])
        codes["triton"] = triton.main([{str(model)!r}, {str(tmp_path / "repo")!r}])
    with runtime.load({str(model)!r}, device="cpu") as m:
        codes["runtime"] = int(m(np.ones((2, 4, 8, 8), np.float32)).sum() != 2 * 4 * 64 * 4)
        create_app(m, "tiny")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        codes["export"] = launch.export()
    codes["export-message"] = err.getvalue()
    print(json.dumps(codes))
    """
    result = run_blocked(code)
    assert result.returncode == 0, result.stderr
    codes = json.loads(result.stdout.splitlines()[-1])
    message = codes.pop("export-message")
    assert codes == {"lint": 0, "dry-run": 0, "bench-onnx": 0, "triton": 0, "runtime": 0, "export": 2}
    assert message.count("\n") == 1
    assert message.startswith("scconv-export: error: scconv-export runs on the export side and needs PyTorch")
    assert "pip install 'scconv-deploy[export,cpu]'" in message
    assert (tmp_path / "repo" / "tiny" / "config.pbtxt").is_file()


def test_the_lazy_package_attributes_of_the_deployment_side_need_no_torch():
    assert "Golden" in scconv_deploy.__all__
    result = run_blocked(
        "import scconv_deploy, sys\n"
        "scconv_deploy.Golden, scconv_deploy.EngineError\n"
        "assert 'torch' not in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr
