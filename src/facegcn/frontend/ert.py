"""dlib's ensemble-of-regression-trees shape predictor (Kazemi & Sullivan 2014) without dlib.

``dlib.shape_predictor(path)`` spends ~1 s decoding its 100 MB file (holding the GIL). This module
parses the file once (:func:`read_shape_predictor`), keeps the model as numpy arrays in
``cache_dir("dlib-ert")`` (an uncompressed ``.npz``, no pickle) and maps it back in tens of
milliseconds; :class:`ShapePredictor` is ``shape_predictor::operator()`` of
``dlib/image_processing/shape_predictor.h`` (tests/frontend/test_ert.py: dlib's points exactly).

**File format** (``deserialize(shape_predictor&)``, ``dlib/serialize.h``): integers are a control
byte (bit 7: negative, low 4 bits: 1..8 bytes) then the magnitude little-endian; floats are two
integers, value ``(float)mantissa * 2**exponent`` (exponents 32000..32002: inf/-inf/NaN; a first
byte with bits 0x70: dlib's old ASCII floats, unsupported). ``std::vector``: size, elements;
``matrix<float,0,1>``: rows, cols (negated in the newer format), values; ``vector<float,2>``: x, y.
The predictor: version 1, ``initial_shape`` (x0, y0, x1, ...), ``forests`` (per cascade its trees;
a tree is ``splits`` (idx1, idx2, thresh) then ``leaf_values`` (shape increments); node ``i`` goes
to ``2i+1`` when ``f[idx1] - f[idx2] > thresh``, else ``2i+2``), ``anchor_idx`` and ``deltas``
(per cascade, each feature pixel's part and offset in the normalized initial shape).

**Prediction**, per cascade: Umeyama's similarity from the initial to the current shape (float64,
cast to float32 as ``matrix_cast<float>``); each feature pixel at ``R*delta + current[anchor]``
(float32) through the rectangle's map ``(0,0) -> (left, top)``, ``(1,1) -> (right, bottom)``
(float64), rounded (``floor(v + 0.5)``), its intensity (RGB ``(r + g + b) // 3``, outside 0); then
every tree's leaf added in order (float32). Parts: the final shape through the rectangle's map,
rounded to integers like dlib's ``point``.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import math
import mmap
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegcn.errors import FaceGCNError, ModelFileError

log = logging.getLogger(__name__)

_CACHE_FORMAT = 1
_FIELDS = ("initial_shape", "anchor", "deltas", "idx1", "idx2", "thresh", "leaves", "tree_start")
_ERRORS = {-1: "truncated or malformed integer", -2: "unsupported float (old ASCII format or non-finite)",
           -3: "inconsistent tree or leaf size"}


@dataclass(frozen=True, eq=False)
class ERTModel:
    """A parsed dlib shape predictor (``P`` parts, ``K`` cascades, ``T`` trees in all, ``S``
    splits per tree, ``F`` feature pixels per cascade)."""

    initial_shape: np.ndarray  # (2P,) float32, normalized to the rectangle: x0, y0, x1, y1, ...
    anchor: np.ndarray  # (K, F) uint16/int32: the part each feature pixel is relative to
    deltas: np.ndarray  # (K, F, 2) float32: its offset from that part (initial-shape frame)
    idx1: np.ndarray  # (T, S) uint16/int32: split feature pixels
    idx2: np.ndarray  # (T, S)
    thresh: np.ndarray  # (T, S) float32
    leaves: np.ndarray  # (T, S + 1, 2P) float32: shape increments
    tree_start: np.ndarray  # (K + 1,) int64: cascade k = trees tree_start[k]:tree_start[k + 1]

    num_parts = property(lambda self: self.initial_shape.shape[0] // 2)
    num_cascades = property(lambda self: self.anchor.shape[0])
    num_trees = property(lambda self: self.idx1.shape[0])
    tree_depth = property(lambda self: int(round(math.log2(self.leaves.shape[1]))))
    # dlib's shape_predictor::num_features(): the number of leaves of all trees
    num_features = property(lambda self: self.leaves.shape[0] * self.leaves.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in _FIELDS}

    def validate(self, what: str = "model", check_values: bool = True) -> ERTModel:
        """Shapes, dtypes and index ranges (what the kernel relies on), and with ``check_values``
        finite values; ModelFileError if wrong."""
        a = self.arrays()

        def bad(msg: str):
            raise ModelFileError(f"{what}: not a dlib shape predictor ({msg})")

        kinds = {"initial_shape": ("f4",), "deltas": ("f4",), "thresh": ("f4",), "leaves": ("f4",),
                 "tree_start": ("i8",)}
        for k, v in a.items():
            if not isinstance(v, np.ndarray) or v.dtype not in [np.dtype(d) for d in kinds.get(k, ("u2", "i4"))]:
                bad(f"{k} is not a {'/'.join(kinds.get(k, ('u2', 'i4')))} array")
        s0, an, de, i1, i2, th, lv, ts = (a[k] for k in _FIELDS)
        if s0.ndim != 1 or s0.size < 2 or s0.size % 2:
            bad("initial shape size")
        if an.ndim != 2 or de.shape != (*an.shape, 2) or an.shape[1] == 0:
            bad("feature pixel arrays")
        if i1.ndim != 2 or i2.shape != i1.shape or th.shape != i1.shape:
            bad("split arrays")
        n_leaves = i1.shape[1] + 1
        if lv.shape != (i1.shape[0], n_leaves, s0.size) or n_leaves & (n_leaves - 1):
            bad("leaf arrays (trees must be complete binary trees)")
        if ts.shape != (an.shape[0] + 1,) or ts[0] != 0 or ts[-1] != i1.shape[0] or np.any(np.diff(ts) < 0):
            bad("cascade tree ranges")
        if (an.size and int(an.max()) >= s0.size // 2) or (i1.size and max(i1.max(), i2.max()) >= an.shape[1]):
            bad("anchor or split feature index out of range")
        if check_values and not all(np.isfinite(x).all() for x in (s0, de, th, lv)):
            bad("non-finite values")
        return self


# ------------------------------------------------------------------------------- the parser --
def read_shape_predictor(path: str | os.PathLike) -> ERTModel:
    """Parse a file written by dlib's ``serialize(shape_predictor)`` (no dlib needed)."""
    from facegcn.frontend import _ert_kernels as K

    path = Path(path)
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    name = str(path)
    pos = 0

    def check(p: int, what: str) -> int:
        if p < 0:
            raise ModelFileError(f"{name}: not a dlib shape predictor ({_ERRORS.get(p, 'bad data')} in {what}, "
                                 f"near byte {last})")
        return p

    def integer(what: str, lo: int = 0, hi: int = 1 << 40) -> int:
        nonlocal pos, last
        last = pos
        v, pos = K.read_int(buf, pos)
        check(pos, what)
        if not lo <= v <= hi:
            raise ModelFileError(f"{name}: not a dlib shape predictor ({what} = {v} at byte {last})")
        return int(v)

    last = 0
    if integer("version", 0, 1 << 30) != 1:
        raise ModelFileError(f"{name}: not a dlib shape predictor (unexpected version)")
    nr, nc = integer("initial shape rows", -(1 << 20), 1 << 20), integer("initial shape cols", -(1 << 20), 1 << 20)
    if abs(nc) != 1 or abs(nr) < 2 or abs(nr) % 2:
        raise ModelFileError(f"{name}: not a dlib shape predictor (initial shape is {abs(nr)}x{abs(nc)})")
    last = pos
    init, pos = K.read_floats(buf, pos, abs(nr))
    check(pos, "initial shape")
    dim = init.size
    n_casc = integer("number of cascades", 1, 1 << 16)
    counts, idx1s, idx2s, threshs, leaves = [], [], [], [], []
    for c in range(n_casc):
        n_trees = integer(f"number of trees of cascade {c}", 0, 1 << 20)
        counts.append(n_trees)
        if n_trees == 0:
            continue
        if not idx1s:  # the tree shape, from the first tree
            ns, nl, nd = K.tree_shape(buf, pos)
            if ns < 0 or nl != ns + 1 or nl & (nl - 1) or nd != dim:
                raise ModelFileError(f"{name}: not a dlib shape predictor (tree with {ns} splits, {nl} leaves "
                                     f"of size {nd}; need complete trees with leaves of size {dim})")
        if n_trees * nl * (dim + 1) * 4 > buf.size - pos:  # each float takes >= 4 bytes
            raise ModelFileError(f"{name}: not a dlib shape predictor (truncated trees of cascade {c})")
        shape = (n_trees, nl - 1)
        i1, i2 = np.empty(shape, np.int64), np.empty(shape, np.int64)
        th, lv = np.empty(shape, np.float32), np.empty((n_trees, nl, dim), np.float32)
        last = pos
        pos = check(K.read_trees(buf, pos, i1, i2, th, lv), f"the trees of cascade {c}")
        idx1s.append(i1), idx2s.append(i2), threshs.append(th), leaves.append(lv)
    if not idx1s:
        raise ModelFileError(f"{name}: not a dlib shape predictor (no trees)")
    if integer("number of anchor lists", 0, 1 << 16) != n_casc:
        raise ModelFileError(f"{name}: not a dlib shape predictor (anchor lists != cascades)")
    anchors = []
    for c in range(n_casc):
        n = integer(f"number of feature pixels of cascade {c}", 1, 1 << 24)
        last = pos
        a, pos = K.read_ints(buf, pos, n)
        check(pos, f"anchors of cascade {c}")
        anchors.append(a)
    if integer("number of delta lists", 0, 1 << 16) != n_casc:
        raise ModelFileError(f"{name}: not a dlib shape predictor (delta lists != cascades)")
    deltas = []
    for c in range(n_casc):
        if integer(f"number of deltas of cascade {c}", 0, 1 << 24) != anchors[c].size:
            raise ModelFileError(f"{name}: not a dlib shape predictor (deltas != anchors in cascade {c})")
        last = pos
        d, pos = K.read_floats(buf, pos, 2 * anchors[c].size)
        check(pos, f"deltas of cascade {c}")
        deltas.append(d.reshape(-1, 2))
    if pos != buf.size:
        raise ModelFileError(f"{name}: not a dlib shape predictor ({buf.size - pos} trailing bytes)")
    n_feat = {a.size for a in anchors}
    if len(n_feat) != 1:
        raise ModelFileError(f"{name}: cascades with different numbers of feature pixels are not supported")
    n_feat = n_feat.pop()
    i1, i2 = np.concatenate(idx1s), np.concatenate(idx2s)
    an = np.stack(anchors)
    for v, what in ((i1, "split index"), (i2, "split index"), (an, "anchor index")):
        if v.size and (v.min() < 0 or v.max() >= (n_feat if what == "split index" else dim // 2)):
            raise ModelFileError(f"{name}: not a dlib shape predictor ({what} out of range)")
    idt = np.uint16 if max(n_feat, dim // 2) <= 1 << 16 else np.int32
    arrays = dict(
        initial_shape=init, anchor=an.astype(idt), deltas=np.stack(deltas).astype(np.float32),
        idx1=i1.astype(idt), idx2=i2.astype(idt), thresh=np.concatenate(threshs),
        leaves=np.concatenate(leaves) if len(leaves) > 1 else leaves[0],
        tree_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    return ERTModel(**{k: _readonly(v) for k, v in arrays.items()}).validate(name)


# -------------------------------------------------------------------------------- the cache --
# One uncompressed ``.npz`` per model file, named by its stem, size, mtime and location. The small
# arrays are read with zipfile (CRC-checked); ``leaves`` (65 MB for the 68-point model) is mapped
# straight from the archive (it is stored, not deflated) and checked against ``leaves_sum``, the
# uint64 sum of its 32-bit words. Anything missing, truncated or mismatching: rebuilt.
def _cache_key(path: Path) -> str:
    st = path.stat()
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{path.stem}-{st.st_size}-{st.st_mtime_ns}-{where}-v{_CACHE_FORMAT}"


def _cache_file(path: Path) -> Path | None:
    try:
        from facegcn.cache import cache_dir

        return cache_dir("dlib-ert") / f"{_cache_key(path)}.npz"
    except OSError:  # no usable cache folder: parse every time
        return None


def _word_sum(a: np.ndarray) -> np.uint64:
    return np.sum(a.reshape(-1).view(np.uint32), dtype=np.uint64)


def _map_member(file: Path, zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """A read-only array over the ``.npy`` member ``name`` of an uncompressed archive (mmap)."""
    info = zf.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{name} is compressed")
    with open(file, "rb") as fh:
        fh.seek(info.header_offset)
        head = fh.read(30)
        if len(head) != 30 or head[:4] != b"PK\x03\x04":
            raise ValueError("bad local header")
        n_name, n_extra = struct.unpack("<HH", head[26:30])
        start = info.header_offset + 30 + n_name + n_extra
        fh.seek(start)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        offset = fh.tell()
        count = math.prod(shape)
        if fortran or dtype.hasobject or offset + count * dtype.itemsize > start + info.file_size:
            raise ValueError(f"bad {name} member")
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mm, dtype=dtype, count=count, offset=offset).reshape(shape)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.view()
    a.setflags(write=False)
    return a


def _load_cached(file: Path, key: str) -> ERTModel | None:
    try:
        with zipfile.ZipFile(file) as zf:
            if str(_npy(zf, "key")) != key:
                return None
            small = {k: _npy(zf, k) for k in _FIELDS if k != "leaves"}
            leaves = _map_member(file, zf, "leaves")
            if _word_sum(leaves) != _npy(zf, "leaves_sum"):
                raise ValueError("leaves checksum mismatch")
        model = ERTModel(leaves=leaves, **{k: _readonly(v) for k, v in small.items()})
        return model.validate(str(file), check_values=False)
    except Exception as exc:  # noqa: BLE001 - a missing/corrupt/foreign entry is rebuilt
        if not isinstance(exc, FileNotFoundError):
            log.debug("ignoring shape predictor cache %s: %s", file, exc)
        return None


def _npy(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with zf.open(f"{name}.npy") as fh:  # zipfile checks the CRC when the member is read through
        return np.lib.format.read_array(fh, allow_pickle=False)


def _save_cached(file: Path, key: str, model: ERTModel) -> None:
    from facegcn.io.atomic import atomic_open

    try:
        with atomic_open(file, "wb") as fh:
            np.savez(fh, key=np.array(key), leaves_sum=_word_sum(model.leaves), **model.arrays())
    except (OSError, FaceGCNError) as exc:  # read-only cache: parse again next time
        log.debug("cannot write shape predictor cache %s: %s", file, exc)
        return
    parts = key.rsplit("-", 4)  # stem, size, mtime, location, format: drop the same file's older entries
    for old in file.parent.glob(f"{glob.escape(parts[0])}-*-{parts[-2]}-v*.npz") if len(parts) == 5 else ():
        if old != file and old.stem.rsplit("-", 4)[0] == parts[0]:
            with contextlib.suppress(OSError):
                old.unlink()


def load_model(path: str | os.PathLike | None = None, *, use_cache: bool = True) -> ERTModel:
    """The model of ``path`` (default: the 68-point predictor of ``face_recognition_models``),
    from the cache when it has an entry for this file's size and mtime, else parsed (and cached)."""
    if path is None:
        from facegcn.frontend.models import SHAPE_68, dlib_model_path

        path = dlib_model_path(SHAPE_68)
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"shape predictor file missing: {path}")
    file = _cache_file(path) if use_cache else None
    if file is not None:
        key = file.stem
        model = _load_cached(file, key)
        if model is not None:
            return model
    model = read_shape_predictor(path)
    if file is not None:
        _save_cached(file, key, model)
    return model


# ---------------------------------------------------------------------------- the predictor --
def _rect(box) -> np.ndarray:
    """(left, top, right, bottom) of a ``dlib.rectangle``-like object or a 4-sequence."""
    if hasattr(box, "left") and callable(box.left):
        vals = (box.left(), box.top(), box.right(), box.bottom())
    else:
        vals = tuple(np.asarray(box, np.float64).reshape(-1))
        if len(vals) != 4:
            raise ValueError(f"box must be (left, top, right, bottom), got {len(vals)} values")
    r = np.array(vals, np.float64)
    if not np.isfinite(r).all():
        raise ValueError("box has non-finite coordinates")
    return r


def _image(image) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))):
        raise ValueError(f"unsupported image {img.dtype} {img.shape}: must be 8-bit gray (H, W) or RGB (H, W, 3)")
    if img.ndim == 2:
        img = img[:, :, None]
    return _readonly(img if img.flags.c_contiguous else np.ascontiguousarray(img))  # one kernel signature


class ShapePredictor:
    """``dlib.shape_predictor`` in numba: ``ShapePredictor.load()(image, box)`` equals
    ``dlib.shape_predictor(path)(image, dlib.rectangle(*box))``'s parts.

    Thread-safe (read-only model, the kernel releases the GIL)."""

    def __init__(self, model: ERTModel):
        self.model = model.validate(check_values=False)
        self._args = tuple(_readonly(np.ascontiguousarray(a)) for a in (
            model.initial_shape, model.anchor, model.deltas, model.idx1, model.idx2, model.thresh,
            model.leaves, model.tree_start))

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, use_cache: bool = True) -> ShapePredictor:
        """The predictor of ``path`` (default: ``shape_predictor_68_face_landmarks.dat``)."""
        return cls(load_model(path, use_cache=use_cache))

    @property
    def num_parts(self) -> int:
        return self.model.num_parts

    def __call__(self, image, box) -> np.ndarray:
        """The parts, ``(P, 2)`` float64 (x, y) with integer values (dlib rounds its points).

        ``image``: uint8 ``(H, W)`` gray or ``(H, W, 3)`` RGB (dlib's two accepted types);
        ``box``: ``dlib.rectangle`` or (left, top, right, bottom) — dlib's rectangles are integer,
        so pass integers (e.g. ``int(round(v))``) to reproduce dlib; other values are used as
        they are (float32, like dlib's rectangle corners)."""
        from facegcn.frontend._ert_kernels import predict_kernel

        out = np.empty((self.num_parts, 2), np.float64)
        predict_kernel(_image(image), _rect(box), *self._args, out)
        return out


def predict_reference(model: ERTModel, image, box) -> np.ndarray:
    """The same prediction in numpy (~13 ms a face instead of ~2 ms; tests compare the two)."""
    img, (left, top, right, bottom) = _image(image), (np.float64(np.float32(v)) for v in _rect(box))
    h, w = img.shape[:2]
    sx, sy = right - left, bottom - top
    init = model.initial_shape
    n_parts, n_splits = model.num_parts, model.idx1.shape[1]
    f = init.reshape(-1, 2).astype(np.float64)
    fc = f - f.mean(0)
    sig = (fc * fc).sum() / n_parts
    cur = init.copy()
    for k in range(model.num_cascades):
        t = cur.reshape(-1, 2).astype(np.float64)
        cov = (t - t.mean(0)).T @ fc / n_parts
        a, b = (cov[0, 0] + cov[1, 1]) / sig, (cov[1, 0] - cov[0, 1]) / sig
        m00, m01, m10, m11 = np.float32(a), np.float32(-b), np.float32(b), np.float32(a)
        an, d = model.anchor[k].astype(np.intp), model.deltas[k]
        qx = (m00 * d[:, 0] + m01 * d[:, 1]) + cur[2 * an]  # float32
        qy = (m10 * d[:, 0] + m11 * d[:, 1]) + cur[2 * an + 1]
        px = np.floor(sx * qx.astype(np.float64) + left + 0.5)
        py = np.floor(sy * qy.astype(np.float64) + top + 0.5)
        inside = (px >= 0) & (py >= 0) & (px < w) & (py < h)
        pix = img[np.where(inside, py, 0).astype(np.intp), np.where(inside, px, 0).astype(np.intp)]
        val = pix[:, 0] if img.shape[2] == 1 else pix.astype(np.int32).sum(1) // 3
        feat = np.where(inside, val, 0).astype(np.float32)
        t0, t1 = model.tree_start[k], model.tree_start[k + 1]
        rows, node = np.arange(t1 - t0), np.zeros(t1 - t0, np.intp)
        i1, i2, th = model.idx1[t0:t1], model.idx2[t0:t1], model.thresh[t0:t1]
        for _ in range(model.tree_depth):
            node = 2 * node + np.where(feat[i1[rows, node]] - feat[i2[rows, node]] > th[rows, node], 1, 2)
        steps = np.concatenate([cur[None], model.leaves[np.arange(t0, t1), node - n_splits]])
        cur = np.add.accumulate(steps, axis=0)[-1]  # sequential float32 sums, dlib's order
    return np.stack([np.floor(sx * cur[0::2].astype(np.float64) + left + 0.5),
                     np.floor(sy * cur[1::2].astype(np.float64) + top + 0.5)], axis=1)


def warm_up() -> None:
    """Load the predictor kernel's compiled code (numba's on-disk cache) for the argument types
    :class:`ShapePredictor` passes, on a dummy model: a background thread can take the one-off
    numba/LLVM start-up (~1 s, mostly without the GIL) off the first real prediction."""
    z = {k: np.zeros(s, d) for k, s, d in (("initial_shape", (2,), np.float32), ("anchor", (1, 1), np.uint16),
                                            ("deltas", (1, 1, 2), np.float32), ("idx1", (1, 1), np.uint16),
                                            ("idx2", (1, 1), np.uint16), ("thresh", (1, 1), np.float32),
                                            ("leaves", (1, 2, 2), np.float32))}
    model = ERTModel(tree_start=np.array([0, 1], np.int64), **z)
    ShapePredictor(model)(np.zeros((1, 1, 3), np.uint8), (0, 0, 1, 1))
