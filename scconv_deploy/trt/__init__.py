"""TensorRT engines from SCConv ONNX files, checked against PyTorch; TensorRT itself is imported lazily."""

from .bench import BenchResult, BenchRow, bench_onnx, bench_plan, measure
from .build import BuiltEngine, build_engine
from .check import find_golden, run_batches, verify_engine, verify_plan
from .cuda import CudaDevice, cuda_device, require_cuda
from .env import INSTALL_TRT, TrtHost, require_tensorrt, require_trt_gpu
from .inspect import EngineReport, LayerInfo, inspect_plan, layer_info, sidecar_summary
from .onnx_file import OnnxInput
from .onnx_precision import Precision, onnx_precision
from .pipeline import BuildResult, CheckSetup, build_and_verify, load_golden_for, prepare_check
from .plan import BuildPlan
from .profile import ShapeRange, make_profile
from .progress import BuildProgress
from .runner import Engine, TensorSpec, load_engine
from .sidecar import BuildInfo, check_compatible, read_sidecar, sidecar_path, write_engine_files
from .twin import twin_path, twin_plan

__all__ = [
    "INSTALL_TRT",
    "BenchResult",
    "BenchRow",
    "BuildInfo",
    "BuildPlan",
    "BuildProgress",
    "BuildResult",
    "BuiltEngine",
    "CheckSetup",
    "CudaDevice",
    "Engine",
    "EngineReport",
    "LayerInfo",
    "OnnxInput",
    "Precision",
    "ShapeRange",
    "TensorSpec",
    "TrtHost",
    "bench_onnx",
    "bench_plan",
    "build_and_verify",
    "build_engine",
    "check_compatible",
    "cuda_device",
    "find_golden",
    "inspect_plan",
    "layer_info",
    "load_engine",
    "load_golden_for",
    "make_profile",
    "measure",
    "onnx_precision",
    "prepare_check",
    "read_sidecar",
    "require_cuda",
    "require_tensorrt",
    "require_trt_gpu",
    "run_batches",
    "sidecar_path",
    "sidecar_summary",
    "twin_path",
    "twin_plan",
    "verify_engine",
    "verify_plan",
    "write_engine_files",
]
