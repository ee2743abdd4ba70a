"""Run a TensorFlow Lite graph as a differentiable torch module (no TFLite runtime involved).

The ``.tflite`` flatbuffer is read with the ``tflite`` package (generated flatbuffer accessors, no
interpreter). Constant tensors become float32 parameters of the module (``requires_grad`` off;
float16/int8 ``DEQUANTIZE`` and sparse ``DENSIFY`` of constants are folded at load time); the
operators run in torch, in order. Rank-4 activations are kept NCHW inside (TFLite is NHWC), so
the module takes images as (B, C, H, W) and returns every output in TFLite's own layout with the
batch first (a rank-4 output comes back NHWC, as the interpreter gives it). Activations and conv
weights are stored channels-last in memory (NHWC strides behind the NCHW shape): measured ~20 %
less CPU time than plain NCHW for these small MobileNet-style graphs. The parsed graph is cached
on disk (:mod:`facegcn.frontend.tflite_cache`): a later process skips the parse (0.1-0.3 s a graph).

Semantics follow TFLite's reference kernels: 'SAME' padding puts the odd extra row/column at the
bottom/right, pooling ignores padded cells (max: −inf, average: excluded from the count), fused
activations NONE / RELU / RELU_N1_TO_1 / RELU6 (TFLite's kernels do not apply a fused TANH,
so a model with one is refused). An operator outside :data:`SUPPORTED`
raises :class:`~facegcn.errors.ModelFileError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegcn.errors import ModelFileError

SUPPORTED = (
    "ADD", "SUB", "MUL", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "PRELU",
    "RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "PAD", "PADV2", "RESHAPE",
    "CONCATENATION", "FULLY_CONNECTED", "RESIZE_BILINEAR", "DEPTH_TO_SPACE", "DEQUANTIZE", "DENSIFY",
)
_NP_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


@dataclass
class _Op:
    kind: str
    inputs: list  # int (runtime tensor id), str (constant key) or None (absent optional input)
    output: int
    opts: dict = field(default_factory=dict)


def _opname(model, op) -> str:
    from tflite.utils import BUILTIN_OPCODE2NAME

    oc = model.OperatorCodes(op.OpcodeIndex())
    code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
    if code == 32:  # CUSTOM
        custom = oc.CustomCode()
        return f"CUSTOM:{custom.decode(errors='replace') if custom else '?'}"
    return BUILTIN_OPCODE2NAME.get(code, f"builtin#{code}")


def _options(op, cls_name: str):
    import tflite

    table = op.BuiltinOptions()
    if table is None:
        return None
    opts = getattr(tflite, cls_name)()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _index_vector(table, kind: int) -> np.ndarray:
    import tflite

    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[kind]
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return np.asarray(vec.ValuesAsNumpy(), dtype=np.int64)


def _densify(values: np.ndarray, sparsity, shape: list[int], name: str) -> np.ndarray:
    """TFLite's sparse format (dense and CSR levels in traversal order, no blocks) → dense."""
    order = list(sparsity.TraversalOrderAsNumpy())
    if sparsity.BlockMapLength() or order != list(range(len(shape))):
        raise ModelFileError(f"{name}: block-sparse or reordered sparse tensors are not supported")
    flat = np.zeros([1], dtype=np.int64)  # dense index of each node at the current level
    for d in range(sparsity.DimMetadataLength()):
        dm = sparsity.DimMetadata(d)
        if dm.Format() == 0:  # DENSE
            size = dm.DenseSize()
            flat = (flat[:, None] * size + np.arange(size)[None, :]).reshape(-1)
        else:  # SPARSE_CSR
            seg = _index_vector(dm.ArraySegments(), dm.ArraySegmentsType())
            idx = _index_vector(dm.ArrayIndices(), dm.ArrayIndicesType())
            parent = np.repeat(np.arange(len(flat)), np.diff(seg))
            flat = flat[parent] * shape[d] + idx
    out = np.zeros(int(np.prod(shape)), dtype=values.dtype)
    out[flat] = values[: len(flat)]
    return out.reshape(shape)


def _activation(x: torch.Tensor, act: int) -> torch.Tensor:
    """Fused activation (checked at load: NONE, RELU, RELU_N1_TO_1 or RELU6)."""
    if act == 0:
        return x
    if act == 1:
        return F.relu(x)
    if act == 2:
        return x.clamp(-1.0, 1.0)
    return F.relu6(x)


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TF 'SAME': output ceil(size / s); the odd padding cell goes after (bottom/right)."""
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _nchw(t: torch.Tensor) -> torch.Tensor:
    """A TFLite-layout (NHWC-broadcastable) tensor of rank ≤ 4 → broadcastable against NCHW."""
    if t.dim() > 4:
        raise ModelFileError("tensors of rank > 4 are not supported")
    return t.reshape((1,) * (4 - t.dim()) + tuple(t.shape)).permute(0, 3, 1, 2)


class TFLiteGraph(nn.Module):
    """A ``.tflite`` model's first subgraph, executed by torch ops.

    Args:
        path: the ``.tflite`` file.
        cache: read the parsed graph from, and write it to, ``cache_dir("tflite")`` (keyed by the
            file's SHA-256; see :mod:`facegcn.frontend.tflite_cache`): a hit skips the parse.

    Attributes:
        input_shapes / output_shapes: TFLite shapes (batch 1, NHWC for rank 4) of the graph's
            inputs and outputs; ``forward`` takes rank-4 inputs as NCHW with any batch size.
    """

    def __init__(self, path: str | Path, cache: bool = True):
        super().__init__()
        from facegcn.frontend import tflite_cache

        path = Path(path)
        try:
            buf = path.read_bytes()
        except OSError as exc:
            raise ModelFileError(f"cannot read TFLite model {path}: {exc.strerror or exc}") from None
        if len(buf) < 8 or buf[4:8] != b"TFL3":
            raise ModelFileError(f"not a TFLite flatbuffer: {path}")
        self.name = path.name
        if cache and tflite_cache.load(self, buf):
            return
        import tflite

        try:
            model = tflite.Model.GetRootAsModel(buf, 0)
            graph = model.Subgraphs(0)
            self._parse(buf, model, graph)
        except ModelFileError:
            raise
        except Exception as exc:  # noqa: BLE001  (a truncated/garbled flatbuffer)
            raise ModelFileError(f"cannot parse TFLite model {path}: {type(exc).__name__}: {exc}") from None
        if cache:
            tflite_cache.save(self, buf)

    # -------------------------------------------------------------------------------- loading --
    def _parse(self, buf: bytes, model, graph) -> None:
        self._buf, self._model, self._graph = buf, model, graph
        self._consts: dict[int, np.ndarray] = {}
        self.weights = nn.ParameterDict()
        self.shapes = {i: [int(d) for d in graph.Tensors(i).ShapeAsNumpy()] if graph.Tensors(i).ShapeLength() else []
                       for i in range(graph.TensorsLength())}
        self.input_ids = [int(i) for i in graph.InputsAsNumpy()]
        self.output_ids = [int(i) for i in graph.OutputsAsNumpy()]
        self.input_shapes = [self.shapes[i] for i in self.input_ids]
        self.output_shapes = [self.shapes[i] for i in self.output_ids]
        self.ops: list[_Op] = []
        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            kind = _opname(model, op)
            ins = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
            out = int(op.Outputs(0))
            if kind in ("DEQUANTIZE", "DENSIFY") and self._const(ins[0]) is not None:
                src = self._const(ins[0])
                if kind == "DENSIFY":
                    src = _densify(src.reshape(-1), graph.Tensors(ins[0]).Sparsity(), self.shapes[out], self.name)
                self._consts[out] = self._dequantize(src, graph.Tensors(ins[0]))
                continue
            if kind not in SUPPORTED:
                raise ModelFileError(f"{self.name}: unsupported TFLite op {kind} (operator {k})")
            if graph.Tensors(out).Type() != 0:
                raise ModelFileError(f"{self.name}: operator {k} ({kind}) has non-float32 output (quantized model?)")
            self.ops.append(self._compile(kind, op, ins, out))
        for i in self.input_ids:
            if graph.Tensors(i).Type() != 0:
                raise ModelFileError(f"{self.name}: input {i} is not float32")
        del self._buf, self._model, self._graph, self._consts
        uses: dict[int, int] = {}
        for n, o in enumerate(self.ops):
            for i in o.inputs:
                if isinstance(i, int):
                    uses[i] = n
        self._free = [[i for i, last in uses.items() if last == n and i not in self.output_ids] for n in range(len(self.ops))]

    def _const(self, i: int) -> np.ndarray | None:
        if i in self._consts:
            return self._consts[i]
        t = self._graph.Tensors(i)
        b = self._model.Buffers(t.Buffer())
        if b.DataLength() > 0:
            raw = b.DataAsNumpy().tobytes()
        elif b.Offset() > 1:
            raw = self._buf[b.Offset(): b.Offset() + b.Size()]
        else:
            return None
        if t.Type() not in _NP_TYPES:
            raise ModelFileError(f"{self.name}: constant tensor {i} has unsupported type {t.Type()}")
        arr = np.frombuffer(raw, dtype=_NP_TYPES[t.Type()])
        shape = self.shapes[i]
        if t.Sparsity() is None and arr.size == int(np.prod(shape)):
            arr = arr.reshape(shape)
        self._consts[i] = arr
        return arr

    @staticmethod
    def _dequantize(arr: np.ndarray, tensor) -> np.ndarray:
        if arr.dtype in (np.float16, np.float32):
            return arr.astype(np.float32)
        q = tensor.Quantization()
        if q is None or not q.ScaleLength():
            raise ModelFileError("DEQUANTIZE of an integer tensor without quantization parameters")
        scale, zp = q.ScaleAsNumpy().astype(np.float32), q.ZeroPointAsNumpy().astype(np.float32)
        if scale.size > 1:
            shape = [1] * arr.ndim
            shape[q.QuantizedDimension()] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return ((arr.astype(np.float32) - zp) * scale).astype(np.float32)

    def _param(self, i: int, conv: str = "") -> str:
        """Constant tensor ``i`` as a float32 parameter; ``conv`` "c" / "d": as a conv / depthwise
        weight in torch's (O, I, kh, kw) order, channels-last like the activations."""
        key = f"{conv or 't'}{i}"
        if key not in self.weights:
            arr = self._dequantize(self._const(i), self._graph.Tensors(i))
            t = torch.from_numpy(np.array(arr, dtype=np.float32))
            if conv:
                t = t.permute(0, 3, 1, 2) if conv == "c" else t.permute(3, 0, 1, 2)
                t = t.contiguous(memory_format=torch.channels_last)
            self.weights[key] = nn.Parameter(t, requires_grad=False)
        return key

    def _operand(self, i: int) -> int | str | None:
        """A runtime input: tensor id, parameter key of a constant (in TFLite's layout), or None."""
        if i < 0:
            return None
        return i if self._const(i) is None else self._param(i)

    def _compile(self, kind: str, op, ins: list[int], out: int) -> _Op:
        o = self._compile_op(kind, op, ins, out)
        if o.opts.get("act", 0) not in (0, 1, 2, 3):  # TFLite's kernels ignore fused TANH / SIGN_BIT
            raise ModelFileError(f"{self.name}: unsupported fused activation {o.opts['act']} on {kind}")
        return o

    def _compile_op(self, kind: str, op, ins: list[int], out: int) -> _Op:
        o: dict = {"rank": len(self.shapes[out])}
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opt = _options(op, "Conv2DOptions" if kind == "CONV_2D" else "DepthwiseConv2DOptions")
            o.update(stride=(opt.StrideH(), opt.StrideW()), dil=(opt.DilationHFactor(), opt.DilationWFactor()),
                     same=opt.Padding() == 0, act=opt.FusedActivationFunction(),
                     groups=1 if kind == "CONV_2D" else self.shapes[ins[0]][3])
            args = [ins[0], self._param(ins[1], "c" if kind == "CONV_2D" else "d"),
                    self._operand(ins[2]) if len(ins) > 2 else None]
            return _Op("conv", args, out, o)
        if kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            opt = _options(op, "Pool2DOptions")
            o.update(k=(opt.FilterHeight(), opt.FilterWidth()), stride=(opt.StrideH(), opt.StrideW()),
                     same=opt.Padding() == 0, act=opt.FusedActivationFunction(), avg=kind == "AVERAGE_POOL_2D")
            return _Op("pool", [ins[0]], out, o)
        if kind in ("ADD", "SUB", "MUL"):
            opt = _options(op, {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[kind])
            o.update(fn=kind, act=opt.FusedActivationFunction() if opt is not None else 0)
            return _Op("binary", [self._operand(i) for i in ins], out, o)
        if kind in ("PAD", "PADV2"):
            pads = self._const(ins[1])
            if pads is None:
                raise ModelFileError(f"{self.name}: PAD with non-constant paddings is not supported")
            value = float(self._const(ins[2]).reshape(-1)[0]) if len(ins) > 2 and ins[2] >= 0 else 0.0
            pads = np.asarray(pads, dtype=np.int64).reshape(-1, 2)
            if pads.shape[0] == 4:
                pads = pads[[0, 3, 1, 2]]  # NHWC → NCHW
            o.update(pads=tuple(int(v) for row in pads[::-1] for v in row), value=value)
            return _Op("pad", [ins[0]], out, o)
        if kind == "RESHAPE":
            return _Op("reshape", [ins[0]], out, o)
        if kind == "CONCATENATION":
            opt = _options(op, "ConcatenationOptions")
            axis = opt.Axis() % o["rank"]
            o.update(axis=_NHWC_TO_NCHW_AXIS[axis] if o["rank"] == 4 else axis, act=opt.FusedActivationFunction())
            return _Op("concat", [self._operand(i) for i in ins], out, o)
        if kind == "FULLY_CONNECTED":
            opt = _options(op, "FullyConnectedOptions")
            o.update(act=opt.FusedActivationFunction(), keep=bool(opt.KeepNumDims()))
            args = [ins[0], self._param(ins[1]), self._operand(ins[2]) if len(ins) > 2 else None]
            return _Op("fc", args, out, o)
        if kind == "RESIZE_BILINEAR":
            opt = _options(op, "ResizeBilinearOptions")
            o.update(size=tuple(self.shapes[out][1:3]), align=opt.AlignCorners(), half=opt.HalfPixelCenters())
            return _Op("resize", [ins[0]], out, o)
        if kind == "DEPTH_TO_SPACE":
            o.update(bs=_options(op, "DepthToSpaceOptions").BlockSize())
            return _Op("d2s", [ins[0]], out, o)
        if kind == "PRELU":
            return _Op("prelu", [ins[0], self._operand(ins[1])], out, o)
        return _Op("unary", [ins[0]], out, {"fn": kind, **o})

    # -------------------------------------------------------------------------------- running --
    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the graph.

        Args:
            inputs: one float tensor per graph input, batch first; rank-4 inputs as (B, C, H, W)
                with (C, H, W) equal to the model's, on the module's device and in its dtype
                (float32 unless the module was converted, e.g. ``.double()`` for gradient checks).

        Returns:
            One tensor per graph output, in TFLite layout with batch B first (rank-4 outputs
            NHWC), on the same device and dtype. Differentiable in the inputs.
        """
        if len(inputs) != len(self.input_ids):
            raise ValueError(f"{self.name} takes {len(self.input_ids)} input(s), got {len(inputs)}")
        vals: dict[int, torch.Tensor] = {}
        for i, x, shape in zip(self.input_ids, inputs, self.input_shapes):
            want = tuple(shape[3:] + shape[1:3]) if len(shape) == 4 else tuple(shape[1:])
            if tuple(x.shape[1:]) != want:
                raise ValueError(f"{self.name}: input of shape {tuple(x.shape)}, expected (B, {', '.join(map(str, want))})")
            x = x if x.is_floating_point() else x.float()
            vals[i] = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x  # NCHW, NHWC in memory
        for op, free in zip(self.ops, self._free):
            args = [vals[a] if isinstance(a, int) else (None if a is None else self.weights[a]) for a in op.inputs]
            vals[op.output] = getattr(self, "_run_" + op.kind)(args, op.opts, op)
            for i in free:
                vals.pop(i, None)
        return tuple(vals[i].permute(0, 2, 3, 1) if vals[i].dim() == 4 else vals[i] for i in self.output_ids)

    def _bcast(self, t: torch.Tensor, rank: int, const: bool) -> torch.Tensor:
        return _nchw(t) if rank == 4 and (t.dim() < 4 or const) else t

    def _run_conv(self, args, o, op):
        x, w, b = args
        ph, pw = (0, 0), (0, 0)
        if o["same"]:
            ph = _same_pads(x.shape[2], w.shape[2], o["stride"][0], o["dil"][0])
            pw = _same_pads(x.shape[3], w.shape[3], o["stride"][1], o["dil"][1])
        if ph[0] == ph[1] and pw[0] == pw[1]:
            y = F.conv2d(x, w, b, o["stride"], (ph[0], pw[0]), o["dil"], o["groups"])
        else:
            y = F.conv2d(F.pad(x, (pw[0], pw[1], ph[0], ph[1])), w, b, o["stride"], 0, o["dil"], o["groups"])
        return _activation(y, o["act"])

    def _run_pool(self, args, o, op):
        (x,) = args
        (kh, kw), (sh, sw) = o["k"], o["stride"]
        ph, pw = (_same_pads(x.shape[2], kh, sh, 1), _same_pads(x.shape[3], kw, sw, 1)) if o["same"] else ((0, 0), (0, 0))
        pads = (pw[0], pw[1], ph[0], ph[1])
        if not o["avg"] and (kh, kw) == (sh, sw) and not any(pads) and x.shape[2] % kh == 0 and x.shape[3] % kw == 0:
            y = x[:, :, ::kh, ::kw]  # non-overlapping windows: strided maxima, ~6x faster on CPU (NCHW)
            for i in range(kh):
                for j in range(kw):
                    y = torch.maximum(y, x[:, :, i::kh, j::kw]) if i or j else y
        elif not o["avg"]:
            y = F.max_pool2d(F.pad(x, pads, value=float("-inf")) if any(pads) else x, (kh, kw), (sh, sw))
        elif not any(pads):
            y = F.avg_pool2d(x, (kh, kw), (sh, sw))
        else:  # padded cells do not count
            ones = F.pad(torch.ones_like(x[:1, :1]), pads)
            y = F.avg_pool2d(F.pad(x, pads), (kh, kw), (sh, sw), divisor_override=1)
            y = y / F.avg_pool2d(ones, (kh, kw), (sh, sw), divisor_override=1)
        return _activation(y, o["act"])

    def _run_binary(self, args, o, op):
        a, b = (self._bcast(t, o["rank"], isinstance(k, str)) for t, k in zip(args, op.inputs))
        y = a + b if o["fn"] == "ADD" else a - b if o["fn"] == "SUB" else a * b
        return _activation(y, o["act"])

    def _run_prelu(self, args, o, op):
        x, alpha = args
        if x.dim() == 4 and alpha.numel() == x.shape[1] and alpha.shape[-1] == x.shape[1]:
            return F.prelu(x, alpha.reshape(-1))
        alpha = self._bcast(alpha, x.dim(), True)
        return torch.where(x >= 0, x, alpha * x)

    def _run_unary(self, args, o, op):
        (x,) = args
        fn = o["fn"]
        if fn == "LOGISTIC":
            return torch.sigmoid(x)
        if fn == "HARD_SWISH":
            return F.hardswish(x)
        return torch.tanh(x) if fn == "TANH" else _activation(x, {"RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}[fn])

    def _run_pad(self, args, o, op):
        return F.pad(args[0], o["pads"], value=o["value"])

    def _run_reshape(self, args, o, op):
        x = args[0].permute(0, 2, 3, 1) if args[0].dim() == 4 else args[0]
        y = x.reshape((x.shape[0], *self.shapes[op.output][1:]))
        return y.permute(0, 3, 1, 2) if y.dim() == 4 else y

    def _run_concat(self, args, o, op):
        ts = [self._bcast(t, o["rank"], isinstance(k, str)) for t, k in zip(args, op.inputs)]
        b = max(t.shape[0] for t in ts)
        return _activation(torch.cat([t.expand(b, *t.shape[1:]) for t in ts], o["axis"]), o["act"])

    def _run_fc(self, args, o, op):
        x, w, b = args
        x = x.permute(0, 2, 3, 1) if x.dim() == 4 else x
        y = F.linear(x.reshape(-1, w.shape[1]) if not o["keep"] else x, w, b)
        return _activation(y.reshape(x.shape[0], -1) if not o["keep"] else y, o["act"])

    def _run_resize(self, args, o, op):
        (x,) = args
        if o["align"] or o["half"]:
            return F.interpolate(x, size=o["size"], mode="bilinear", align_corners=bool(o["align"]))
        # legacy TF: source = dst · in/out, clamped at the last row/column
        h, w = x.shape[2:]
        out_h, out_w = o["size"]

        def axis(n_in: int, n_out: int):
            src = torch.arange(n_out, device=x.device, dtype=x.dtype) * (n_in / n_out)
            i0 = src.floor().long().clamp(max=n_in - 1)
            return i0, (i0 + 1).clamp(max=n_in - 1), (src - i0).view(-1)

        y0, y1, fy = axis(h, out_h)
        x0, x1, fx = axis(w, out_w)
        rows = x[:, :, y0] * (1 - fy)[:, None] + x[:, :, y1] * fy[:, None]
        return rows[..., x0] * (1 - fx) + rows[..., x1] * fx

    def _run_d2s(self, args, o, op):
        (x,) = args
        bs, (b, c, h, w) = o["bs"], args[0].shape
        y = x.reshape(b, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)  # TF's DCR order
        return y.reshape(b, c // (bs * bs), h * bs, w * bs)
