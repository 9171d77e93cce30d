"""What the TensorRT ONNX parser accepts, as data: operators, their types and restrictions, opsets.

Sources (read 2026; restate, don't copy — re-check when a new TensorRT release is targeted):

* onnx/onnx-tensorrt ``docs/operators.md`` for TensorRT 10.15 (the newest 10.x matrix we found):
  the operator table below, its type lists and restrictions; "opset 9 to opset 24".
* the same file for TensorRT 10.0: "opset 9 to opset 20".
* onnx/onnx-tensorrt ``docs/Changelog.md``: when operators arrived within 10.x (``since``), and
  "Added support for opset 21 GroupNorm" in 10.9 (GroupNormalization-18 dates from 8.6).
* NVIDIA TensorRT 11.0 release notes: the parser added ``Swish``; 11.5 release notes: opset 25.
  No 11.x operator matrix was available, so TensorRT 11 is the 10.15 matrix plus ``Swish``; the
  11.0 opset ceiling (24) is inferred from 10.15 and the 11.5 note, not read.
* NVIDIA/TensorRT#4756 (open): GroupNormalization with ``num_groups=1`` computes per-channel
  instance normalisation in 10.16; onnx/onnx-tensorrt#1052 (open) fixes the importer.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

MAJORS = (10, 11)
MIN_OPSET = 9

# Newest default-domain opset documented for a release, per major: ((major, minor), opset), oldest first.
# Between two points the ceiling is unknown: the lint warns there instead of failing.
MAX_OPSET = MappingProxyType(
    {
        10: (((10, 0), 20), ((10, 15), 24)),
        11: (((11, 0), 24), ((11, 5), 25)),
    }
)


@dataclass(frozen=True)
class OpSupport:
    """One operator the parser imports: documented tensor types, a restriction, first 10.x/11.x release."""

    types: tuple[str, ...]
    note: str = ""
    since: tuple[int, int] | None = None


# Type groups as the matrix names them.
_F = ("FP32", "FP16", "BF16")
_FI = (*_F, "INT32", "INT64")
_FIB = (*_FI, "BOOL")
_B = ("BOOL",)
_F32_16 = ("FP32", "FP16")
_CONST = (*_F, "FP8", "FP4", "INT4", "INT32", "INT64", "BOOL")
_AXES = "`axes` must be an initializer"


def _ops(types: tuple[str, ...], *names: str) -> dict[str, OpSupport]:
    return {name: OpSupport(types) for name in names}


SUPPORTED_10: MappingProxyType[str, OpSupport] = MappingProxyType(
    {
        **_ops(_F, "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "BatchNormalization", "Ceil", "Celu"),
        **_ops(_F, "Clip", "Conv", "ConvTranspose", "Cos", "Cosh", "Einsum", "Elu", "Erf", "Exp", "Floor"),
        **_ops(_F, "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "GroupNormalization", "GRU"),
        **_ops(_F, "HardSigmoid", "HardSwish", "ImageScaler", "InstanceNormalization", "IsInf", "LeakyRelu"),
        **_ops(_F, "Log", "LogSoftmax", "LRN", "LSTM", "LpNormalization", "MatMul", "PRelu", "Reciprocal"),
        **_ops(_F, "MeanVarianceNormalization", "ParametricSoftplus", "RNN", "Round", "ScaledTanh", "Scan"),
        **_ops(
            _F, "Selu", "Sigmoid", "Sin", "Sinh", "Softmax", "Softplus", "Softsign", "Sqrt", "Tan", "Tanh"
        ),
        **_ops(_F, "ThresholdedRelu", "Upsample", "RandomNormal", "RandomUniform"),
        **_ops(_FI, "Abs", "Add", "ArgMax", "ArgMin", "DepthToSpace", "Div", "Equal", "Greater"),
        **_ops(
            _FI, "GreaterOrEqual", "IsNaN", "Less", "LessOrEqual", "Max", "Min", "Mod", "Mul", "Neg", "Pad"
        ),
        **_ops(_FI, "Pow", "Range", "Relu", "Scatter", "ScatterElements", "Shrink", "Sign", "SpaceToDepth"),
        **_ops(_FI, "Sub", "Sum"),
        **_ops(_FIB, "Concat", "Expand", "Flatten", "Gather", "GatherElements", "GatherND", "Identity", "If"),
        **_ops(_FIB, "Reshape", "ReverseSequence", "Shape", "Size", "Slice", "Split", "Tile", "Transpose"),
        **_ops(_FIB, "Trilu", "Where"),
        **_ops(_B, "And", "Not", "Or", "Xor"),
        **_ops(_F32_16, "GridSample", "Mish", "NonMaxSuppression", "NonZero", "RoiAlign"),
        **{
            name: OpSupport(_FI, _AXES)
            for name in (
                "ReduceL1",
                "ReduceL2",
                "ReduceLogSum",
                "ReduceLogSumExp",
                "ReduceMax",
                "ReduceMean",
                "ReduceMin",
                "ReduceProd",
                "ReduceSum",
                "ReduceSumSquare",
            )
        },
        "Attention": OpSupport((*_F, "INT8", "FP8"), "4-D Q/K/V only; no past key/value inputs", (10, 14)),
        "AveragePool": OpSupport(_F, "2-D or 3-D pooling only; dilations must be 1"),
        "BlackmanWindow": OpSupport(_F32_16, since=(10, 4)),
        "Cast": OpSupport((*_FI, "UINT8", "BOOL")),
        "CastLike": OpSupport((*_FI, "UINT8", "BOOL")),
        "Constant": OpSupport(_CONST, "no sparse or string values"),
        "ConstantOfShape": OpSupport(_CONST),
        "CumSum": OpSupport(_F, "`axis` must be a build-time constant"),
        "DeformConv": OpSupport(_F32_16, "1-D or 2-D spatial input, symmetric pads", (10, 1)),
        "DequantizeLinear": OpSupport(("INT8", "FP8", "FP4", "INT4"), "`x_zero_point` must be zero"),
        "Dropout": OpSupport(_F, "`is_training` must be an initializer that is false"),
        "EyeLike": OpSupport(_FIB, "input must have static dimensions"),
        "Gelu": OpSupport((*_F, "INT8", "INT32", "INT64")),
        "HammingWindow": OpSupport(_F32_16, since=(10, 4)),
        "HannWindow": OpSupport(_F32_16, since=(10, 4)),
        "Hardmax": OpSupport(_F, "size of the `axis` dimension must be a build-time constant"),
        "LayerNormalization": OpSupport(_F, "only the first output `Y`"),
        "Loop": OpSupport(_FIB, "scan outputs of static length; loop-carried shapes fixed"),
        "LpPool": OpSupport(_F, "dilations must be 1"),
        "MaxPool": OpSupport(_F, "2-D or 3-D pooling only; no `Indices` output; dilations must be 1"),
        "Mean": OpSupport((*_F, "FP8", "INT32", "INT64")),
        "OneHot": OpSupport(_FIB, "`depth` must be a build-time constant"),
        "QuantizeLinear": OpSupport(_F, "`y_zero_point` must be zero"),
        "RandomNormalLike": OpSupport(_F, "`seed` is ignored"),
        "RandomUniformLike": OpSupport(_F, "`seed` is ignored"),
        "Resize": OpSupport(_F, "modes nearest/linear; no antialiasing; aspect ratio policy stretch only"),
        "RMSNormalization": OpSupport(_F, since=(10, 15)),
        "RotaryEmbedding": OpSupport(_F, "`position_ids` must be INT64", (10, 15)),
        "ScatterND": OpSupport(_FI, "`reduction` must be none"),
        "Squeeze": OpSupport(_FIB, "`axes` must resolve to a constant"),
        "STFT": OpSupport(("FP32",), "`frame_step` and `window` initializers; real input", (10, 5)),
        "TensorScatter": OpSupport((*_F, "INT32"), "4-D cache and update, `axis` = -2", (10, 15)),
        "TopK": OpSupport(_FI, "`sorted` must be 1; K below 3840"),
        "Unsqueeze": OpSupport(_FIB, "`axes` must resolve to a constant"),
    }
)

SUPPORTED = MappingProxyType(
    {
        10: SUPPORTED_10,
        11: MappingProxyType({**SUPPORTED_10, "Swish": OpSupport(_F, since=(11, 0))}),
    }
)

# Marked "N" in the matrix: the parser has no importer (a plugin of the same name is the only way).
UNSUPPORTED = frozenset(
    {
        "AffineGrid",
        "Bernoulli",
        "BitShift",
        "BitwiseAnd",
        "BitwiseNot",
        "BitwiseOr",
        "BitwiseXor",
        "CenterCropPad",
        "Col2Im",
        "Compress",
        "ConcatFromSequence",
        "ConvInteger",
        "DFT",
        "Det",
        "DynamicQuantizeLinear",
        "ImageDecoder",
        "MatMulInteger",
        "MaxRoiPool",
        "MaxUnpool",
        "MelWeightMatrix",
        "Multinomial",
        "NegativeLogLikelihoodLoss",
        "Optional",
        "OptionalGetElement",
        "OptionalHasElement",
        "QLinearConv",
        "QLinearMatMul",
        "RegexFullMatch",
        "SequenceAt",
        "SequenceConstruct",
        "SequenceEmpty",
        "SequenceErase",
        "SequenceInsert",
        "SequenceLength",
        "SequenceMap",
        "SoftmaxCrossEntropyLoss",
        "SplitToSequence",
        "StringConcat",
        "StringNormalizer",
        "StringSplit",
        "TfIdfVectorizer",
        "Unique",
    }
)

ONNX_DOMAINS = frozenset({"", "ai.onnx"})

# Inputs that take BOOL by the ONNX spec in operators whose data types exclude it.
BOOL_CONTROL_INPUTS = MappingProxyType({"Dropout": (2,), "Attention": (3,)})

COMPARISON_OPS = frozenset({"Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "IsNaN", "IsInf"})
LOGICAL_OPS = frozenset({"And", "Not", "Or", "Xor"})
# Numeric consumers of a mask: a BOOL mask cast to a number and fed here is "bool arithmetic".
ARITHMETIC_OPS = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "MatMul", "Gemm", "Neg"}
    | {"Abs", "Sqrt", "Exp", "Log", "Reciprocal", "Relu", "Sigmoid", "Tanh", "Clip", "Sign", "Conv"}
    | {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "CumSum"}
)

# Inputs read as shapes (rule TRT020). Split and Slice bounds have their own rule (TRT030).
SHAPE_INPUTS = MappingProxyType(
    {
        "Reshape": (1,),
        "Expand": (1,),
        "Tile": (1,),
        "ConstantOfShape": (0,),
        "Range": (0, 1, 2),
        "Resize": (3,),
        "Pad": (1,),
        "Squeeze": (1,),
        "Unsqueeze": (1,),
        "TopK": (1,),
        "OneHot": (1,),
    }
)

# Operators whose output is not a function of their inputs: never constant-folded.
NONDETERMINISTIC_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"}
)

# GroupNormalization: opset-21 form from 10.9 (Changelog); num_groups=1 wrong in these releases (#4756).
GROUPNORM_OPSET21 = 21
GROUPNORM_OPSET21_SINCE = (10, 9)
GROUPNORM_G1_WRONG = frozenset({(10, 16)})
# The GroupNorm plugin's node names, deprecated in favour of the native layer.
GROUPNORM_PLUGIN_OPS = frozenset({"GroupNormalizationPlugin", "GroupNormPlugin"})
