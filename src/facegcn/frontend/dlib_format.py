"""A reader for dlib's binary serialization of its face-recognition ResNet (no dlib, no pickle).

The file ``dlib_face_recognition_resnet_model_v1.dat`` is the ``serialize(net, out)`` of
``loss_metric<fc_no_bias<128, avg_pool_everything<alevel0<...alevel4<max_pool<relu<affine<
con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>`` (dlib's ``dnn_face_recognition_ex.cpp``).
The format, from dlib's ``serialize.h``, ``dnn/core.h``, ``dnn/layers.h``, ``dnn/input.h``,
``dnn/loss.h`` and ``cuda/tensor.h``:

* integers: a control byte (bit 7 = negative, low 4 bits = number of bytes that follow), then
  the magnitude little-endian;
* floats: two integers, mantissa (int64) and exponent (int16), value = mantissa * 2**exponent;
* bool: the ASCII byte ``'0'`` or ``'1'``; strings: a size integer then the bytes;
* tensors: int version 2, four int dims (n, k, nr, nc), then raw little-endian float32 data;
  alias tensors: int version 1 and the four dims only;
* ``add_loss_layer``: version, loss details, subnetwork; ``add_layer``: version, subnetwork,
  layer details, three bools, x_grad, cached_output, params_grad (tensors); the ``add_layer`` that
  sits on the input layer stores the input layer in place of the subnetwork (and
  ``_sample_expansion_factor`` in version 3); ``add_tag_layer``/``add_skip_layer``: version and
  subnetwork (a tag over the input stores more, never the case here).

Layers are therefore stored innermost (input) first. :func:`read_dlib_resnet` walks the known
architecture and returns the weights in forward order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegcn.errors import ModelFileError


class _Reader:
    def __init__(self, data: bytes, name: str):
        self.data = data
        self.pos = 0
        self.name = name

    def fail(self, what: str):
        raise ModelFileError(f"{self.name}: not a dlib face-recognition ResNet file ({what} at byte {self.pos})")

    def byte(self) -> int:
        if self.pos >= len(self.data):
            self.fail("unexpected end of file")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def int(self) -> int:
        ctl = self.byte()
        size = ctl & 0x0F
        if size == 0 or size > 8 or ctl & 0x70:
            self.fail("bad integer")
        if self.pos + size > len(self.data):
            self.fail("unexpected end of file")
        val = int.from_bytes(self.data[self.pos : self.pos + size], "little")
        self.pos += size
        return -val if ctl & 0x80 else val

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        if exponent >= 32000:  # is_inf / is_ninf / is_nan (see dlib/float_details.h)
            self.fail("non-finite float")
        return float(np.ldexp(float(mantissa), exponent))

    def bool(self) -> bool:
        ch = self.byte()
        if ch not in (ord("0"), ord("1")):
            self.fail("bad bool")
        return ch == ord("1")

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 256 or self.pos + n > len(self.data):
            self.fail("bad string")
        s = self.data[self.pos : self.pos + n]
        self.pos += n
        try:
            return s.decode("ascii")
        except UnicodeDecodeError:
            self.fail("bad string")
            raise  # unreachable

    def expect(self, *names: str) -> str:
        s = self.string()
        if s not in names:
            self.fail(f"expected {'/'.join(names)!r}, found {s!r}")
        return s

    def version(self, *allowed: int) -> int:
        v = self.int()
        if v not in allowed:
            self.fail(f"unexpected version {v}")
        return v

    def tensor(self) -> np.ndarray:
        self.version(2)
        dims = [self.int() for _ in range(4)]
        if any(d < 0 for d in dims):
            self.fail("negative tensor size")
        n = int(np.prod(dims))
        end = self.pos + 4 * n
        if end > len(self.data):
            self.fail("truncated tensor")
        arr = np.frombuffer(self.data, dtype="<f4", count=n, offset=self.pos).reshape(dims)
        self.pos = end
        return arr.astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version(1)
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


# ---- the architecture, outermost layer first (what dlib's layer<0>, layer<1>, ... are) ----------

def _block(n: int, stride: int) -> list[tuple]:
    # block<N,BN,stride,SUB> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUB>>>>>
    return [("affine",), ("con", n, 3, 1), ("relu",), ("affine",), ("con", n, 3, stride)]


def _ares(n: int) -> list[tuple]:
    # relu<add_prev1<block<N,affine,1,tag1<SUB>>>>
    return [("relu",), ("add_prev", 1), *_block(n, 1), ("tag", 1)]


def _ares_down(n: int) -> list[tuple]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUB>>>>>>>
    return [("relu",), ("add_prev", 2), ("avg_pool", 2, 2), ("skip", 1), ("tag", 2), *_block(n, 2), ("tag", 1)]


def architecture() -> list[tuple]:
    """The dlib ResNet's layers, outermost (loss side) first, excluding loss and input."""
    layers: list[tuple] = [("fc", 128), ("avg_pool", 0, 0)]
    layers += _ares_down(256)  # alevel0
    layers += _ares(256) + _ares(256) + _ares_down(256)  # alevel1
    layers += _ares(128) + _ares(128) + _ares_down(128)  # alevel2
    layers += _ares(64) + _ares(64) + _ares(64) + _ares_down(64)  # alevel3
    layers += _ares(32) + _ares(32) + _ares(32)  # alevel4
    layers += [("max_pool", 3, 2), ("relu",), ("affine",), ("con", 32, 7, 2)]
    return layers


@dataclass
class DlibResNetWeights:
    """Weights in forward order (input first). ``convs[i]`` = (weight OIHW, bias), ``affines[i]`` =
    (gamma, beta) per channel, ``fc`` = (128, 256) weight for ``y = fc @ x``."""

    avg_rgb: tuple[float, float, float]
    convs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    affines: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    fc: np.ndarray | None = None
    margin: float = 0.0
    dist_thresh: float = 0.0


def _read_layer_details(r: _Reader, layer: tuple, out: DlibResNetWeights) -> None:
    kind = layer[0]
    if kind == "con":
        _, n, ksize, stride = layer
        r.expect("con_4", "con_5", "con_6")
        version = r.data[r.pos - 1 : r.pos]  # last char of the version string
        params = r.tensor()
        num_filters = r.int()
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        pad = 0 if stride != 1 else ksize // 2
        if (num_filters, nr, nc, sy, sx, py, px) != (n, ksize, ksize, stride, stride, pad, pad):
            r.fail(f"unexpected convolution {num_filters}x{nr}x{nc}/{sy} pad {py}")
        fshape = r.alias_tensor()
        bshape = r.alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        use_bias = True
        if version in (b"5", b"6"):
            use_bias = r.bool()
        if version == b"6":
            r.bool()  # use_relu (fused relu, only set by dlib's fuse_layers)
        nw = int(np.prod(fshape))
        flat = params.reshape(-1)
        if flat.size != nw + (n if use_bias else 0):
            r.fail("convolution parameter count")
        w = flat[:nw].reshape(fshape)
        b = flat[nw : nw + n] if use_bias else np.zeros(n, np.float32)
        out.convs.append((w.copy(), b.copy()))
    elif kind == "affine":
        v = r.expect("affine_", "affine_2")
        params = r.tensor().reshape(-1)
        gshape = r.alias_tensor()
        r.alias_tensor()
        mode = r.int()
        if v == "affine_2":
            r.bool()  # disabled
        ng = int(np.prod(gshape))
        if mode != 0 or params.size != 2 * ng:  # CONV_MODE == 0
            r.fail("unexpected affine layer")
        out.affines.append((params[:ng].copy(), params[ng:].copy()))
    elif kind == "relu":
        v = r.expect("relu_", "relu_2")
        if v == "relu_2":
            if r.bool():
                r.fail("disabled relu")
    elif kind in ("max_pool", "avg_pool"):
        r.expect(f"{kind}_2")
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        size, stride = layer[1], layer[2]
        if kind == "avg_pool" and size == 0:
            if (nr, nc, py, px) != (0, 0, 0, 0):
                r.fail("unexpected global pooling")
        elif (nr, nc, sy, sx, py, px) != (size, size, stride, stride, 0, 0):
            r.fail(f"unexpected {kind} {nr}x{nc}/{sy} pad {py}")
    elif kind == "add_prev":
        r.expect("add_prev_")
    elif kind == "fc":
        v = r.expect("fc_2", "fc_3")
        num_outputs = r.int()
        num_inputs = r.int()
        params = r.tensor().reshape(-1)
        wshape = r.alias_tensor()
        r.alias_tensor()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if v == "fc_3":
            r.bool()
        if num_outputs != layer[1] or bias_mode != 1 or params.size != num_inputs * num_outputs:  # FC_NO_BIAS
            r.fail("unexpected fully-connected layer")
        if wshape[:2] != (num_inputs, num_outputs):
            r.fail("unexpected fully-connected weight shape")
        out.fc = params.reshape(num_inputs, num_outputs).T.copy()
    else:  # pragma: no cover
        raise AssertionError(kind)


def _read_net(r: _Reader, layers: list[tuple], out: DlibResNetWeights) -> None:
    """Recursive descent over the nested add_layer/add_tag_layer/add_skip_layer records."""
    layer, rest = layers[0], layers[1:]
    if layer[0] in ("tag", "skip"):
        r.version(1)
        _read_net(r, rest, out)
        return
    if rest:
        v = r.version(1, 2)
        _read_net(r, rest, out)
    else:  # the add_layer on top of the input layer
        v = r.version(2, 3)
        r.expect("input_rgb_image_sized")
        out.avg_rgb = (r.float(), r.float(), r.float())
        if (r.int(), r.int()) != (150, 150):
            r.fail("input size is not 150x150")
    _read_layer_details(r, layer, out)
    for _ in range(3):
        r.bool()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if not rest or v == 2:
        r.tensor()  # grad_final (add_layer over the input) / params_grad (add_layer version 2)
    if not rest and v == 3:
        r.int()  # _sample_expansion_factor


def read_dlib_resnet(path: str | Path) -> DlibResNetWeights:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` into numpy weights (forward order)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    r = _Reader(data, str(path))
    r.version(1)  # add_loss_layer
    if r.expect("loss_metric_", "loss_metric_2") == "loss_metric_2":
        margin, thresh = r.float(), r.float()
    else:
        margin, thresh = 0.1, 0.75
    out = DlibResNetWeights(avg_rgb=(0.0, 0.0, 0.0), margin=margin, dist_thresh=thresh)
    _read_net(r, architecture(), out)
    if r.pos != len(data):
        r.fail(f"{len(data) - r.pos} trailing bytes")
    if len(out.convs) != 29 or len(out.affines) != 29 or out.fc is None:
        r.fail("wrong number of layers")
    return out

