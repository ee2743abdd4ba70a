"""TFLiteGraph, one operator at a time, against the TFLite runtime (LiteRT) on hand-built models.

Reference: ``ai_edge_litert.interpreter.Interpreter`` running the same single-op ``.tflite``
(written here with the ``tflite`` package's flatbuffer builders). The cases cover what the
MediaPipe face models do not exercise: odd sizes with 'SAME' padding (extra row/column at the
bottom/right), even kernels, dilation, depth multipliers, pooling with padding, every fused
activation, constant broadcasting, the three RESIZE_BILINEAR modes, DEPTH_TO_SPACE and int8 /
float16 DEQUANTIZE of weights.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
import pytest
import torch

tflite = pytest.importorskip("tflite")
litert = pytest.importorskip("ai_edge_litert.interpreter")

from tflite.utils import BUILTIN_OPCODE2NAME  # noqa: E402

from facegcn.errors import ModelFileError  # noqa: E402
from facegcn.frontend.tflite_graph import TFLiteGraph  # noqa: E402

_CODES = {v: k for k, v in BUILTIN_OPCODE2NAME.items()}
_TYPES = {np.float32: 0, np.float16: 1, np.int32: 2, np.int8: 9}


def _vec(b, arr, dtype):
    return b.CreateNumpyVector(np.asarray(arr, dtype=dtype))


def _table_vector(b, start, offsets):
    start(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def build_model(tensors, ops, inputs, outputs) -> bytes:
    """tensors: [(shape, data or None, quant (scale, zero_point) or None)]; ops: [(name, ins,
    outs, options_name or None, {field: value})]. Returns the flatbuffer bytes."""
    b = flatbuffers.Builder(1024)
    names = sorted({op[0] for op in ops})
    buffers = [None] + [t[1] for t in tensors]
    buf_offs = []
    for data in buffers:
        d = None if data is None else _vec(b, np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8), np.uint8)
        tflite.BufferStart(b)
        if d is not None:
            tflite.BufferAddData(b, d)
        buf_offs.append(tflite.BufferEnd(b))
    t_offs = []
    for k, (shape, data, quant) in enumerate(tensors):
        shp, name = _vec(b, shape, np.int32), b.CreateString(f"t{k}")
        q = None
        if quant is not None:
            sc, zp = _vec(b, [quant[0]], np.float32), _vec(b, [quant[1]], np.int64)
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, sc)
            tflite.QuantizationParametersAddZeroPoint(b, zp)
            q = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shp)
        tflite.TensorAddType(b, _TYPES[np.dtype(data.dtype).type] if data is not None else 0)
        tflite.TensorAddBuffer(b, k + 1 if data is not None else 0)
        tflite.TensorAddName(b, name)
        if q is not None:
            tflite.TensorAddQuantization(b, q)
        t_offs.append(tflite.TensorEnd(b))
    op_offs = []
    for name, ins, outs, opt_name, fields in ops:
        opt = None
        if opt_name:
            getattr(tflite, f"{opt_name}Start")(b)
            for f, v in fields.items():
                getattr(tflite, f"{opt_name}Add{f}")(b, v)
            opt = getattr(tflite, f"{opt_name}End")(b)
        iv, ov = _vec(b, ins, np.int32), _vec(b, outs, np.int32)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, names.index(name))
        tflite.OperatorAddInputs(b, iv)
        tflite.OperatorAddOutputs(b, ov)
        if opt is not None:
            tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, opt_name))
            tflite.OperatorAddBuiltinOptions(b, opt)
        op_offs.append(tflite.OperatorEnd(b))
    tv = _table_vector(b, tflite.SubGraphStartTensorsVector, t_offs)
    ov = _table_vector(b, tflite.SubGraphStartOperatorsVector, op_offs)
    gi, go = _vec(b, inputs, np.int32), _vec(b, outputs, np.int32)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tv)
    tflite.SubGraphAddOperators(b, ov)
    tflite.SubGraphAddInputs(b, gi)
    tflite.SubGraphAddOutputs(b, go)
    graph = tflite.SubGraphEnd(b)
    codes = []
    for name in names:
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(_CODES[name], 127))
        tflite.OperatorCodeAddBuiltinCode(b, _CODES[name])
        tflite.OperatorCodeAddVersion(b, 1)
        codes.append(tflite.OperatorCodeEnd(b))
    cv = _table_vector(b, tflite.ModelStartOperatorCodesVector, codes)
    gv = _table_vector(b, tflite.ModelStartSubgraphsVector, [graph])
    bv = _table_vector(b, tflite.ModelStartBuffersVector, buf_offs)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, cv)
    tflite.ModelAddSubgraphs(b, gv)
    tflite.ModelAddBuffers(b, bv)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _compare(tmp_path, model: bytes, in_shape, seed=0, tol=2e-5):
    path = tmp_path / "m.tflite"
    path.write_bytes(model)
    x = np.random.default_rng(seed).standard_normal(in_shape).astype(np.float32)
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ref = it.get_tensor(it.get_output_details()[0]["index"])
    t = torch.from_numpy(x)
    with torch.no_grad():
        (got,) = TFLiteGraph(path)(t.permute(0, 3, 1, 2) if t.dim() == 4 else t)
    assert tuple(got.shape) == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, atol=tol * max(1.0, np.abs(ref).max()), rtol=0)


def _w(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.5


CONV_CASES = [  # (input HWC, kernel h, w, out ch, stride, dilation, padding 0=SAME 1=VALID, act)
    ((15, 15, 3), 3, 3, 4, 2, 1, 0, 3),   # odd size, stride 2, RELU6
    ((14, 13, 2), 3, 3, 3, 1, 2, 0, 1),   # dilation 2, RELU
    ((16, 16, 2), 4, 4, 3, 3, 1, 0, 0),   # even kernel, stride 3: asymmetric padding
    ((11, 9, 3), 2, 5, 2, 2, 1, 1, 2),    # VALID, rectangular kernel, RELU_N1_TO_1
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[str(i) for i in range(len(CONV_CASES))])
def test_conv2d_matches_litert(tmp_path, case):
    (h, w, c), kh, kw, o, s, d, pad, act = case
    tensors = [([1, h, w, c], None, None), ([o, kh, kw, c], _w(o, kh, kw, c), None), ([o], _w(o, seed=2), None),
               ([1, 1, 1, o], None, None)]
    fields = {"Padding": pad, "StrideH": s, "StrideW": s, "DilationHFactor": d, "DilationWFactor": d,
              "FusedActivationFunction": act}
    oh = -(-h // s) if pad == 0 else (h - (kh - 1) * d - 1) // s + 1
    ow = -(-w // s) if pad == 0 else (w - (kw - 1) * d - 1) // s + 1
    tensors[3] = ([1, oh, ow, o], None, None)
    model = build_model(tensors, [("CONV_2D", [0, 1, 2], [3], "Conv2DOptions", fields)], [0], [3])
    _compare(tmp_path, model, (1, h, w, c))


@pytest.mark.parametrize("mult,k,s,act", [(2, 5, 2, 2), (1, 3, 1, 3), (3, 3, 2, 0)])
def test_depthwise_matches_litert(tmp_path, mult, k, s, act):
    h, w, c = 13, 12, 3
    oh, ow = -(-h // s), -(-w // s)
    tensors = [([1, h, w, c], None, None), ([1, k, k, c * mult], _w(1, k, k, c * mult), None),
               ([c * mult], _w(c * mult, seed=3), None), ([1, oh, ow, c * mult], None, None)]
    fields = {"Padding": 0, "StrideH": s, "StrideW": s, "DepthMultiplier": mult, "DilationHFactor": 1,
              "DilationWFactor": 1, "FusedActivationFunction": act}
    model = build_model(tensors, [("DEPTHWISE_CONV_2D", [0, 1, 2], [3], "DepthwiseConv2DOptions", fields)], [0], [3])
    _compare(tmp_path, model, (1, h, w, c))


@pytest.mark.parametrize("op", ["MAX_POOL_2D", "AVERAGE_POOL_2D"])
@pytest.mark.parametrize("size,k,s,pad", [(15, 3, 2, 0), (16, 3, 2, 0), (16, 2, 2, 1), (9, 4, 3, 0)])
def test_pooling_matches_litert(tmp_path, op, size, k, s, pad):
    o = -(-size // s) if pad == 0 else (size - k) // s + 1
    tensors = [([1, size, size, 2], None, None), ([1, o, o, 2], None, None)]
    fields = {"Padding": pad, "StrideH": s, "StrideW": s, "FilterHeight": k, "FilterWidth": k}
    _compare(tmp_path, build_model(tensors, [(op, [0], [1], "Pool2DOptions", fields)], [0], [1]), (1, size, size, 2))


def test_elementwise_chain_matches_litert(tmp_path):
    """PRELU (per-channel and full alpha), ADD/MUL/SUB with broadcast constants, PAD (spatial +
    channel), LOGISTIC, TANH, HARD_SWISH, RELU6, CONCATENATION on channels."""
    h, w, c = 5, 6, 3
    pads = np.array([[0, 0], [1, 2], [0, 1], [1, 2]], np.int32)
    tensors = [
        ([1, h, w, c], None, None),                      # 0 input
        ([1, 1, c], _w(1, 1, c, seed=4), None),          # 1 alpha per channel
        ([1, h, w, c], None, None),                      # 2 prelu out
        ([c], _w(c, seed=5), None),                      # 3 const vector
        ([1, h, w, c], None, None),                      # 4 add out (RELU6 fused)
        ([h, w, c], _w(h, w, c, seed=6), None),          # 5 full alpha
        ([1, h, w, c], None, None),                      # 6 prelu2 out
        ([1, h, w, c], None, None),                      # 7 mul out
        ([1, h, w, c], None, None),                      # 8 sub out
        ([4, 2], pads, None),                            # 9 paddings
        ([1, h + 3, w + 1, c + 3], None, None),          # 10 pad out
        ([1, h + 3, w + 1, c + 3], None, None),          # 11 logistic
        ([1, h + 3, w + 1, c + 3], None, None),          # 12 tanh
        ([1, h + 3, w + 1, c + 3], None, None),          # 13 hard swish
        ([1, h + 3, w + 1, 3 * (c + 3)], None, None),    # 14 concat
    ]
    ops = [
        ("PRELU", [0, 1], [2], None, {}),
        ("ADD", [2, 3], [4], "AddOptions", {"FusedActivationFunction": 3}),
        ("PRELU", [0, 5], [6], None, {}),
        ("MUL", [6, 3], [7], "MulOptions", {"FusedActivationFunction": 0}),
        ("SUB", [7, 4], [8], "SubOptions", {"FusedActivationFunction": 0}),
        ("PAD", [8, 9], [10], None, {}),
        ("LOGISTIC", [10], [11], None, {}),
        ("TANH", [10], [12], None, {}),
        ("HARD_SWISH", [10], [13], None, {}),
        ("CONCATENATION", [11, 12, 13], [14], "ConcatenationOptions", {"Axis": 3}),
    ]
    _compare(tmp_path, build_model(tensors, ops, [0], [14]), (1, h, w, c))


@pytest.mark.parametrize("align,half", [(False, False), (True, False), (False, True)])
def test_resize_bilinear_matches_litert(tmp_path, align, half):
    size = np.array([9, 14], np.int32)
    tensors = [([1, 4, 6, 2], None, None), ([2], size, None), ([1, 9, 14, 2], None, None)]
    fields = {"AlignCorners": align, "HalfPixelCenters": half}
    model = build_model(tensors, [("RESIZE_BILINEAR", [0, 1], [2], "ResizeBilinearOptions", fields)], [0], [2])
    _compare(tmp_path, model, (1, 4, 6, 2))


def test_depth_to_space_reshape_fc_dequantize_match_litert(tmp_path):
    """DEPTH_TO_SPACE (TF's DCR order) → RESHAPE (NHWC flattening) → FULLY_CONNECTED with int8
    weights (DEQUANTIZE) and a float16 bias (DEQUANTIZE)."""
    wq = np.random.default_rng(7).integers(-127, 128, (5, 4 * 6 * 2)).astype(np.int8)
    tensors = [
        ([1, 2, 3, 8], None, None),              # 0 input
        ([1, 4, 6, 2], None, None),              # 1 d2s
        ([2], np.array([1, 48], np.int32), None),  # 2 new shape
        ([1, 48], None, None),                   # 3 reshape
        ([5, 48], wq, (0.02, 3)),                # 4 int8 weights
        ([5, 48], None, None),                   # 5 dequantized
        ([5], _w(5, seed=8).astype(np.float16), None),  # 6 fp16 bias
        ([5], None, None),                       # 7 dequantized bias
        ([1, 5], None, None),                    # 8 fc out
    ]
    ops = [
        ("DEPTH_TO_SPACE", [0], [1], "DepthToSpaceOptions", {"BlockSize": 2}),
        ("RESHAPE", [1, 2], [3], None, {}),
        ("DEQUANTIZE", [4], [5], None, {}),
        ("DEQUANTIZE", [6], [7], None, {}),
        ("FULLY_CONNECTED", [3, 5, 7], [8], "FullyConnectedOptions", {"FusedActivationFunction": 1}),
    ]
    _compare(tmp_path, build_model(tensors, ops, [0], [8]), (1, 2, 3, 8))


def test_fused_tanh_is_refused(tmp_path):
    """TFLite's conv kernels silently skip a fused TANH (LiteRT returns the linear output), so
    the port refuses such a model instead of guessing."""
    tensors = [([1, 6, 6, 2], None, None), ([2, 3, 3, 2], _w(2, 3, 3, 2), None), ([2], _w(2), None), ([1, 6, 6, 2], None, None)]
    fields = {"Padding": 0, "StrideH": 1, "StrideW": 1, "DilationHFactor": 1, "DilationWFactor": 1, "FusedActivationFunction": 4}
    path = tmp_path / "tanh.tflite"
    path.write_bytes(build_model(tensors, [("CONV_2D", [0, 1, 2], [3], "Conv2DOptions", fields)], [0], [3]))
    with pytest.raises(ModelFileError, match="fused activation 4"):
        TFLiteGraph(path)


def test_unsupported_op_is_a_model_file_error(tmp_path):
    tensors = [([1, 4, 4, 2], None, None), ([1, 4, 4, 2], None, None)]
    path = tmp_path / "floor.tflite"
    path.write_bytes(build_model(tensors, [("FLOOR", [0], [1], None, {})], [0], [1]))
    with pytest.raises(ModelFileError, match="unsupported TFLite op FLOOR"):
        TFLiteGraph(path)


def test_bad_files_are_model_file_errors(tmp_path):
    with pytest.raises(ModelFileError, match="cannot read"):
        TFLiteGraph(tmp_path / "missing.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="not a TFLite"):
        TFLiteGraph(tmp_path / "junk.tflite")
    good = build_model([([1, 4, 4, 2], None, None), ([1, 4, 4, 2], None, None)], [("RELU", [0], [1], None, {})], [0], [1])
    (tmp_path / "cut.tflite").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelFileError):
        TFLiteGraph(tmp_path / "cut.tflite")
