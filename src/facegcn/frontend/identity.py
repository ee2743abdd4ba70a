"""dlib's 128-d face-recognition ResNet, ported to a differentiable PyTorch module.

* :class:`DlibResNet` reproduces ``dlib_face_recognition_resnet_model_v1`` layer for layer
  (29 convolutions + affine "batch-norm" layers, ReLU, dlib's zero-padding residual adds, global
  average pooling, a 256→128 linear layer without bias). **Input: a (B,3,150,150) RGB chip with
  values in [0, 1]**; it is scaled to 0..255 and normalised exactly as dlib's
  ``input_rgb_image_sized<150>`` (``(v - mean_rgb) / 256``). Output: the raw (un-normalised) dlib
  descriptor, as ``compute_face_descriptor`` returns it.
* The weights are parsed from dlib's own ``.dat`` file (:mod:`facegcn.frontend.dlib_format`), and
  cached as safetensors under ``cache_dir("frontend")``; the cache is rebuilt when missing,
  unreadable or made from a different ``.dat``.
* The chip geometry is dlib's ``get_face_chip_details(shape5, 150, 0.25)`` +
  ``extract_image_chips`` (see :func:`face_chip_transform`). :func:`chip_from_aligned` resamples a
  chip differentiably (bilinear ``grid_sample``) from an aligned 224² image given a fixed chip
  transform, so the identity loss can run on renders.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegcn.errors import InputError, ModelFileError
from facegcn.frontend.geometry import affine_from_3_points, umeyama_similarity
from facegcn.frontend.models import RESNET, dlib_model_path

CHIP_SIZE = 150
CHIP_PADDING = 0.25
DESCRIPTOR_DIM = 128
_FORMAT_TAG = "facegcn-dlib-resnet-v1"

# dlib's canonical positions of the 5-point shape predictor's parts (get_face_chip_details):
# 0/1 outer/inner corner of the eye on the image's right, 2/3 outer/inner corner of the left one,
# 4 the base of the nose.
DLIB_5PT_TEMPLATE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)

# Residual stages in forward order: (channels, downsample) — alevel4 ... alevel0.
_STAGES = [(32, False)] * 3 + [(64, True)] + [(64, False)] * 3 + [(128, True)] + [(128, False)] * 2
_STAGES += [(256, True)] + [(256, False)] * 2 + [(256, True)]


class _Affine(nn.Module):
    """dlib's ``affine`` layer (a frozen batch-norm): ``y = gamma * x + beta`` per channel."""

    def __init__(self, n: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(n))
        self.beta = nn.Parameter(torch.zeros(n))

    def forward(self, x):
        return x * self.gamma[None, :, None, None] + self.beta[None, :, None, None]


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum has the larger size; missing entries count as zero."""
    k, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t):
        dk, dh, dw = k - t.shape[1], h - t.shape[2], w - t.shape[3]
        return F.pad(t, (0, dw, 0, dh, 0, dk)) if (dk or dh or dw) else t

    return grow(a) + grow(b)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.aff1 = _Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        self.aff2 = _Affine(cout)

    def forward(self, x):
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, skip))


class DlibResNet(nn.Module):
    """dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``).

    ``forward(chip)``: chip (B,3,150,150) RGB in [0, 1] → (B,128) dlib descriptor.
    Any 150×150 input works; other sizes run but are not what the network was trained on.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor([122.782, 117.001, 104.298]))
        self.conv0 = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.aff0 = _Affine(32)
        blocks, cin = [], 32
        for cout, down in _STAGES:
            blocks.append(_Block(cin, cout, down))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(256, DESCRIPTOR_DIM, bias=False)

    def forward(self, chip: torch.Tensor) -> torch.Tensor:
        if chip.ndim != 4 or chip.shape[1] != 3:
            raise InputError(f"DlibResNet expects a (B,3,150,150) chip, got shape {tuple(chip.shape)}")
        x = (chip * 255.0 - self.mean_rgb.to(chip.dtype)[None, :, None, None]) / 256.0
        x = F.max_pool2d(F.relu(self.aff0(self.conv0(x))), 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))


# ---- weight conversion and caching ------------------------------------------------------------

def _state_dict_from_dat(path: Path) -> dict[str, torch.Tensor]:
    from facegcn.frontend.dlib_format import read_dlib_resnet

    w = read_dlib_resnet(path)
    sd: dict[str, torch.Tensor] = {"mean_rgb": torch.tensor(w.avg_rgb, dtype=torch.float32)}
    convs, affs = list(w.convs), list(w.affines)
    names = ["conv0"] + [f"blocks.{i}.conv{j}" for i in range(len(_STAGES)) for j in (1, 2)]
    anames = ["aff0"] + [f"blocks.{i}.aff{j}" for i in range(len(_STAGES)) for j in (1, 2)]
    for name, (wt, b) in zip(names, convs, strict=True):
        sd[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(wt))
        sd[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(b))
    for name, (g, b) in zip(anames, affs, strict=True):
        sd[f"{name}.gamma"] = torch.from_numpy(np.ascontiguousarray(g))
        sd[f"{name}.beta"] = torch.from_numpy(np.ascontiguousarray(b))
    sd["fc.weight"] = torch.from_numpy(np.ascontiguousarray(w.fc))
    return sd


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _source_digest(dat: Path) -> str:
    """SHA-256 of dlib's ``.dat``, remembered beside the converted weights by (path, size, mtime)
    so that a process start does not hash 22 MB again."""
    import json

    from facegcn.cache import cache_dir
    from facegcn.io.atomic import atomic_write_text

    st = dat.stat()
    stamp = {"source": str(dat.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    index = cache_dir("frontend") / "dlib_resnet_v1.source.json"
    try:
        saved = json.loads(index.read_text())
        if isinstance(saved, dict) and {k: saved.get(k) for k in stamp} == stamp and len(str(saved.get("sha256"))) == 64:
            return str(saved["sha256"])
    except (OSError, ValueError):
        pass
    digest = _file_sha256(dat)
    try:
        atomic_write_text(index, json.dumps({**stamp, "sha256": digest}))
    except OSError:
        pass
    return digest


def converted_weights_path(dat_path: str | Path | None = None) -> Path:
    """Path of the cached safetensors file, (re)building it from dlib's ``.dat`` when needed."""
    from safetensors import safe_open
    from safetensors.torch import save

    from facegcn.cache import cache_dir
    from facegcn.io.atomic import atomic_write_bytes

    dat = Path(dat_path) if dat_path is not None else dlib_model_path(RESNET)
    if not dat.is_file():
        raise ModelFileError(f"dlib ResNet model file not found: {dat}")
    digest = _source_digest(dat)
    out = cache_dir("frontend") / f"dlib_resnet_v1-{digest[:12]}.safetensors"
    if out.is_file():
        try:
            with safe_open(str(out), framework="pt") as fh:
                meta = fh.metadata() or {}
                if meta.get("format") == _FORMAT_TAG and meta.get("source_sha256") == digest:
                    return out
        except Exception:  # noqa: BLE001 - any unreadable cache file is rebuilt
            pass
    sd = _state_dict_from_dat(dat)
    atomic_write_bytes(out, save(sd, metadata={"format": _FORMAT_TAG, "source_sha256": digest, "source": dat.name}))
    return out


_NET_CACHE: dict[tuple, DlibResNet] = {}
_NET_LOCK = threading.Lock()


def load_identity_net(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, dat_path: str | Path | None = None
) -> DlibResNet:
    """The ported network in eval mode with frozen weights (``requires_grad=False``); gradients
    still flow to the input. Shared per (device, dtype, file): do not modify it in place."""
    from safetensors.torch import load_file

    key = (str(device), dtype, str(dat_path))
    with _NET_LOCK:
        net = _NET_CACHE.get(key)
        if net is None:
            path = converted_weights_path(dat_path)
            try:
                sd = load_file(str(path))
            except Exception as exc:  # noqa: BLE001
                raise ModelFileError(f"cannot read converted identity weights {path}: {exc}") from None
            with torch.device("meta"):  # no random init of weights that are replaced anyway (~0.3 s)
                net = DlibResNet()
            net.load_state_dict(sd, assign=True)
            net = net.to(device=device, dtype=dtype).eval()
            for p in net.parameters():
                p.requires_grad_(False)
            _NET_CACHE[key] = net
    return net


# ---- chip geometry (dlib's get_face_chip_details / extract_image_chips) -----------------------

def face_chip_transform(points5: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """2x3 affine mapping chip pixels (x, y) → image pixels, exactly as dlib builds it from the
    5-point shape predictor's output: similarity fit of the padded template
    (``get_face_chip_details``), a rotated rectangle ``centered_drect(center, size*s, size*s)``, and
    the corner mapping of ``extract_image_chips``."""
    pts = np.asarray(points5, np.float64).reshape(5, 2)
    chip_pts = (padding + DLIB_5PT_TEMPLATE) / (2 * padding + 1) * size
    tform = umeyama_similarity(chip_pts, pts)
    angle = np.arctan2(tform[1, 0], tform[0, 0])
    scale = np.hypot(tform[0, 0], tform[1, 0])
    center = tform[:, :2] @ np.array([size / 2.0, size / 2.0]) + tform[:, 2]
    half = (size * scale - 1.0) / 2.0
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    corners = np.array([[-half, -half], [half, -half], [-half, half]]) @ rot.T + center  # tl, tr, bl
    chip_corners = np.array([[0.0, 0.0], [size - 1.0, 0.0], [0.0, size - 1.0]])
    return affine_from_3_points(chip_corners, corners)


# dlib's mean face shape (get_face_chip_details, 68-point branch), the points used below (0-based).
_DLIB_MEAN_FACE = {
    30: (0.490127, 0.515625), 33: (0.490127, 0.628106),
    36: (0.121737, 0.216423), 37: (0.187122, 0.178758), 38: (0.265825, 0.179852),
    39: (0.334606, 0.231733), 40: (0.260918, 0.245099), 41: (0.182743, 0.244077),
    42: (0.645647, 0.231733), 43: (0.714428, 0.179852), 44: (0.793132, 0.178758),
    45: (0.858516, 0.216423), 46: (0.79751, 0.244077), 47: (0.719335, 0.245099),
    48: (0.254149, 0.780233), 54: (0.726104, 0.780233),
}


def canonical_chip_transform(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """A fixed chip transform (chip pixels → aligned 224² pixels) for a face sitting exactly on the
    alignment template: dlib's mean face is fitted to :data:`~facegcn.frontend.align.TEMPLATE_224`
    through its 5 alignment points, and its eye corners + nose base (what dlib's 5-point predictor
    finds) give the chip. Prefer ``FaceObservation.chip_transform`` for a particular photo."""
    from facegcn.frontend.align import TEMPLATE_224

    mf = {k: np.array(v) for k, v in _DLIB_MEAN_FACE.items()}
    five = np.stack([np.mean([mf[i] for i in range(36, 42)], 0), np.mean([mf[i] for i in range(42, 48)], 0),
                     mf[30], mf[48], mf[54]])
    to_aligned = umeyama_similarity(five, TEMPLATE_224)
    pts5 = np.stack([mf[45], mf[42], mf[36], mf[39], mf[33]]) @ to_aligned[:, :2].T + to_aligned[:, 2]
    return face_chip_transform(pts5, size, padding)


def _to_float_image(img: torch.Tensor) -> torch.Tensor:
    if img.ndim == 3:
        img = img[None]
    if img.ndim != 4 or img.shape[1] != 3:
        raise InputError(f"expected a (B,3,H,W) or (3,H,W) image tensor, got shape {tuple(img.shape)}")
    return img if img.is_floating_point() else img.float() / 255.0


def chip_from_aligned(
    img: torch.Tensor, chip_transform: np.ndarray | torch.Tensor, size: int = CHIP_SIZE
) -> torch.Tensor:
    """Differentiable 150×150 chip from an aligned image (B,3,H,W) in [0, 1].

    ``chip_transform`` maps chip pixels → image pixels (2x3, or (B,2,3) for one per image); for an
    observation it is ``FaceObservation.chip_transform``, for a canonical face
    :func:`canonical_chip_transform`. Bilinear sampling, black outside the image (as dlib)."""
    img = _to_float_image(img)
    b, _, h, w = img.shape
    m = torch.as_tensor(chip_transform, dtype=img.dtype, device=img.device)
    if m.ndim == 2:
        m = m[None].expand(b, 2, 3)
    grids = torch.cat([_grid_from_tensor(m[i], size, h, w) for i in range(b)], dim=0)
    return F.grid_sample(img, grids, mode="bilinear", padding_mode="zeros", align_corners=True)


def _grid_from_tensor(m: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=m.dtype, device=m.device), torch.arange(size, dtype=m.dtype, device=m.device),
        indexing="ij")
    x_in = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    y_in = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    return torch.stack([2.0 * x_in / (w - 1) - 1.0, 2.0 * y_in / (h - 1) - 1.0], dim=-1)[None]


def chip_from_photo(pixels: np.ndarray, points5: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """dlib's own uint8 (size,size,3) face chip, via ``dlib.get_face_chip`` (pyramid + bilinear,
    exactly what ``compute_face_descriptor`` feeds the network)."""
    import dlib

    pts = np.asarray(points5, np.float64).reshape(5, 2)
    h, w = pixels.shape[:2]
    rect = dlib.rectangle(0, 0, int(w) - 1, int(h) - 1)
    shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
    return np.asarray(dlib.get_face_chip(np.ascontiguousarray(pixels, dtype=np.uint8), shape, size=size, padding=padding))


def embed(
    chips: torch.Tensor | np.ndarray, net: DlibResNet | None = None, *, batch_size: int = 16
) -> torch.Tensor:
    """Descriptors (B,128) of chips given as a (B,3,150,150) float tensor in [0,1], a uint8
    tensor/array (B,150,150,3) or (150,150,3) in 0..255. Differentiable for float tensor input."""
    if isinstance(chips, np.ndarray):
        arr = chips if chips.ndim == 4 else chips[None]
        if arr.shape[-1] != 3:
            raise InputError(f"expected (B,150,150,3) chips, got shape {chips.shape}")
        chips = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
    elif not chips.is_floating_point():
        chips = (chips if chips.ndim == 4 else chips[None]).permute(0, 3, 1, 2).float() / 255.0
    elif chips.ndim == 3:
        chips = chips[None]
    if net is None:
        net = load_identity_net(device=chips.device, dtype=chips.dtype if chips.dtype == torch.float64 else torch.float32)
    p = next(net.parameters())
    chips = chips.to(device=p.device, dtype=p.dtype)
    if chips.shape[0] <= batch_size:
        return net(chips)
    return torch.cat([net(chips[i : i + batch_size]) for i in range(0, chips.shape[0], batch_size)], dim=0)


def embed_aligned(
    img: torch.Tensor, chip_transform: np.ndarray | torch.Tensor, net: DlibResNet | None = None
) -> torch.Tensor:
    """Differentiable descriptors (B,128) of aligned images (B,3,224,224) in [0,1] — e.g. renders —
    through a fixed chip transform (``FaceObservation.chip_transform`` or
    :func:`canonical_chip_transform`). dlib truncates its chips to uint8; this path does not, which
    changes descriptors by ~1e-3 (cosine > 0.9999)."""
    return embed(chip_from_aligned(img, chip_transform), net)


class IdentityEncoder:
    """The identity network as one object: what every stage that compares faces holds.

    Wraps the ported dlib ResNet (:func:`load_identity_net`, weights shared per device/dtype/file)
    with the two ways the package feeds it: 150×150 chips cut from a photo, and aligned 224×224
    images (renders) through a fixed chip transform. Descriptors are 128-d; dlib's decision
    threshold for "same person" is a Euclidean distance of 0.6.

    Args:
        device: where the network runs.
        dtype: ``torch.float32`` (default) or ``torch.float64`` (for gradient checks).
        dat_path: dlib's ``dlib_face_recognition_resnet_model_v1.dat``; default: the bundled one.
    """

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 dat_path: str | Path | None = None):
        self.net = load_identity_net(device=device, dtype=dtype, dat_path=dat_path)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def embed_chips(self, chips: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Descriptors of chips (see :func:`embed`). Shapes: ``(B, 3, 150, 150)`` float in [0, 1]
        or ``(B, 150, 150, 3)`` uint8 → ``(B, 128)``."""
        return embed(chips, self.net)

    def embed_aligned(self, img: torch.Tensor, chip_transform: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Differentiable descriptors of aligned images. Shapes: ``(B, 3, 224, 224)`` float in [0, 1]
        → ``(B, 128)``; ``chip_transform`` is the observation's 2×3 chip → aligned affine."""
        return embed_aligned(img, chip_transform, self.net)
