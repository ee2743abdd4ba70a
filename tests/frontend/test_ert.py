"""dlib's shape predictor without dlib (facegcn.frontend.ert) against dlib itself.

References: ``dlib.shape_predictor`` on the same (image, rectangle) — real photos with dlib's own
HOG boxes, shifted / scaled / clipped boxes, gray images, a random sweep — must give the same
points (dlib rounds its points to integers, so "the same" is exact equality); dlib's own
serialization of the parsed model, re-encoded here from the arrays, byte for byte (a small model
trained by ``dlib.train_shape_predictor`` in full, the 68-point file's head and tail); a cache hit
with the parser disabled (proof that it does not parse), and hand-damaged cache files.
"""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")

from facegcn.errors import ModelFileError  # noqa: E402
from facegcn.frontend import ert  # noqa: E402
from facegcn.frontend.models import SHAPE_68, dlib_model_path  # noqa: E402

try:
    SP68 = dlib_model_path(SHAPE_68)
except ModelFileError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"dlib's 68-point model not installed: {exc}", allow_module_level=True)


# ------------------------------------------------------------------------------ fixtures --
@pytest.fixture(scope="module")
def dlib_sp68(dlib_models):
    return dlib_models["sp68"]


@pytest.fixture(scope="module")
def ours():
    return ert.ShapePredictor.load(SP68)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 5-part predictor trained by dlib (3 cascades x 6 trees of depth 3, 40 feature pixels):
    (path, dlib predictor, images, rectangles)."""
    rng = np.random.default_rng(0)
    imgs, objs = [], []
    for _ in range(12):
        im = rng.integers(0, 60, (120, 120), dtype=np.uint8)
        cx, cy = rng.uniform(45, 75, 2)
        pts = np.array([[cx - 15, cy - 10], [cx + 15, cy - 10], [cx, cy + 3], [cx - 10, cy + 15], [cx + 10, cy + 15]])
        for x, y in pts.astype(int):
            im[y - 3 : y + 4, x - 3 : x + 4] = 220
        rect = dlib.rectangle(int(cx - 30), int(cy - 30), int(cx + 30), int(cy + 30))
        imgs.append(im)
        objs.append([dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in pts])])
    o = dlib.shape_predictor_training_options()
    o.cascade_depth, o.num_trees_per_cascade_level, o.tree_depth, o.feature_pool_size = 3, 6, 3, 40
    o.oversampling_amount, o.num_test_splits, o.num_threads, o.be_verbose = 2, 4, 1, False
    sp = dlib.train_shape_predictor(imgs, objs, o)
    path = tmp_path_factory.mktemp("ert") / "tiny.dat"
    sp.save(str(path))
    return path, sp, imgs, [ob[0].rect for ob in objs]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty FACEGCN_CACHE for the test; returns the shape predictor cache folder."""
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "dlib-ert"


def _dlib_points(sp, image, box) -> np.ndarray:
    return np.array([[p.x, p.y] for p in sp(image, dlib.rectangle(*box)).parts()], np.float64)


def _no_parse(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the .dat file was parsed")

    monkeypatch.setattr(ert, "read_shape_predictor", boom)


def _same_model(a: ert.ERTModel, b: ert.ERTModel) -> None:
    for k, v in a.arrays().items():
        w = b.arrays()[k]
        assert v.dtype == w.dtype and v.shape == w.shape and np.array_equal(v, w), k


# ---------------------------------------------------- dlib's serialization, re-encoded here --
def _int(v: int) -> bytes:
    """dlib's ``pack_int``: control byte (size | 0x80 if negative), then the magnitude LE."""
    neg, v, out = v < 0, abs(int(v)), []
    while True:
        out.append(v & 0xFF)
        v >>= 8
        if v == 0:
            break
    return bytes([len(out) | (0x80 if neg else 0)] + out)


def _float(f) -> bytes:
    """dlib's ``float_details`` of a float: 24-bit mantissa, trailing zero bytes dropped."""
    m, e = math.frexp(float(np.float32(f)))
    mant, exp = int(m * (1 << 24)), e - 24
    for _ in range(8):
        if mant & 0xFF:
            break
        mant, exp = mant >> 8, exp + 8
    return _int(mant) + _int(exp)


def _floats(a) -> bytes:
    return b"".join(_float(v) for v in np.asarray(a).reshape(-1))


def _tree(m: ert.ERTModel, t: int) -> bytes:
    out = [_int(m.idx1.shape[1])]
    out += [_int(m.idx1[t, i]) + _int(m.idx2[t, i]) + _float(m.thresh[t, i]) for i in range(m.idx1.shape[1])]
    out.append(_int(m.leaves.shape[1]))
    out += [_int(-m.leaves.shape[2]) + _int(-1) + _floats(leaf) for leaf in m.leaves[t]]
    return b"".join(out)


def _head(m: ert.ERTModel, n_trees: int) -> bytes:
    """version, initial shape, the number of cascades and the first ``n_trees`` of cascade 0."""
    s0 = m.initial_shape
    head = _int(1) + _int(-s0.size) + _int(-1) + _floats(s0) + _int(m.num_cascades)
    return head + _int(m.tree_start[1] - m.tree_start[0]) + b"".join(_tree(m, t) for t in range(n_trees))


def _tail(m: ert.ERTModel) -> bytes:
    """anchor_idx and deltas."""
    out = [_int(m.num_cascades)]
    out += [_int(a.size) + b"".join(_int(v) for v in a) for a in m.anchor]
    out.append(_int(m.num_cascades))
    out += [_int(d.shape[0]) + _floats(d) for d in m.deltas]
    return b"".join(out)


def _serialize(m: ert.ERTModel) -> bytes:
    out = [_head(m, 0)]
    for k in range(m.num_cascades):
        t0, t1 = m.tree_start[k], m.tree_start[k + 1]
        out += ([_int(t1 - t0)] if k else []) + [_tree(m, t) for t in range(t0, t1)]
    return b"".join(out) + _tail(m)


# ---------------------------------------------------------------------------- the parser --
def test_tiny_model_roundtrips_byte_for_byte_and_predicts_like_dlib(tiny):
    path, sp, imgs, rects = tiny
    m = ert.read_shape_predictor(path)
    assert (m.num_parts, m.num_cascades, m.num_trees, m.tree_depth, m.anchor.shape[1]) == (5, 3, 18, 3, 40)
    assert list(m.tree_start) == [0, 6, 12, 18] and m.num_features == 18 * 8
    assert _serialize(m) == path.read_bytes()
    pred = ert.ShapePredictor(m)
    for im, r in zip(imgs, rects):
        for d in (-9, 0, 7):
            box = (r.left() + d, r.top() - d, r.right() + d, r.bottom() + d // 2)
            assert np.array_equal(pred(im, box), _dlib_points(sp, im, box))


def test_68_point_model_structure(ours, dlib_sp68, astronaut):
    m = ours.model
    assert m.num_parts == 68 == len(dlib_sp68(astronaut, dlib.rectangle(175, 76, 265, 166)).parts())
    assert (m.num_cascades, m.num_trees, m.tree_depth, m.anchor.shape[1]) == (15, 7500, 4, 500)
    assert np.all(np.diff(m.tree_start) == 500) and m.num_features == 7500 * 16
    assert m.leaves.dtype == np.float32 and m.idx1.dtype == np.uint16 and m.anchor.dtype == np.uint16
    with open(SP68, "rb") as fh:
        head = _head(m, 3)
        assert fh.read(len(head)) == head  # header, initial shape, first trees
        tail = _tail(m)
        fh.seek(-len(tail), os.SEEK_END)
        assert fh.read() == tail  # every anchor and delta, up to the last byte


@pytest.mark.parametrize("damage", ["truncated", "garbage", "trailing", "version", "empty"])
def test_parser_rejects_damaged_files(tiny, tmp_path, damage):
    raw = tiny[0].read_bytes()
    bad = {"truncated": raw[: len(raw) // 2], "garbage": raw[:100] + bytes([0x7F]) * 50 + raw[150:],
           "trailing": raw + b"\x01\x00", "version": _int(2) + raw[2:], "empty": b""}[damage]
    path = tmp_path / "bad.dat"
    path.write_bytes(bad)
    with pytest.raises(ModelFileError, match="bad.dat"):
        ert.read_shape_predictor(path)


def test_missing_file_is_a_model_file_error(tmp_path):
    with pytest.raises(ModelFileError):
        ert.load_model(tmp_path / "nope.dat")


# ------------------------------------------------------------------------ against dlib --
def _cases(astronaut, hog) -> list[tuple[str, np.ndarray, tuple[int, int, int, int]]]:
    from skimage import data

    def boxes(img):
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in hog(img, 1)]

    gray = np.ascontiguousarray(astronaut.mean(axis=2).astype(np.uint8))
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    camera = np.ascontiguousarray(data.camera())  # natively gray
    face = boxes(astronaut)
    assert face, "dlib found no face in the astronaut photo"
    cases = [("astronaut dlib box", astronaut, b) for b in face]  # the face and the suit false positive
    cases += [("flipped dlib box", flipped, b) for b in boxes(flipped)]
    cases += [("camera", camera, b) for b in boxes(camera) + [(170, 50, 280, 160)]]
    l, t, r, b = max(face, key=lambda q: q[2] - q[0])
    w = r - l
    for dx, dy in ((12, 0), (-12, 0), (0, 15), (0, -15), (20, 20), (-25, 10)):
        cases.append((f"shifted {dx},{dy}", astronaut, (l + dx, t + dy, r + dx, b + dy)))
    for s in (0.7, 0.85, 1.2, 1.5, 2.0):
        h = s * w / 2
        cx, cy = (l + r) / 2, (t + b) / 2
        cases.append((f"scaled {s}", astronaut, tuple(int(round(v)) for v in (cx - h, cy - h, cx + h, cy + h))))
    cases.append(("non-square", astronaut, (l - 5, t - 20, r + 5, b + 10)))
    for name, box in (("over the top-left corner", (-w // 2, -w // 3, w // 2, 2 * w // 3)),
                      ("over the right edge", (512 - w // 2, t, 512 + w // 2, b)),
                      ("over the bottom edge", (l, 512 - w // 3, r, 512 + 2 * w // 3)),
                      ("outside the image", (-300, -300, -200, -200)),
                      ("larger than the image", (-100, -100, 600, 600))):
        cases.append((name, astronaut, box))
    cases += [("gray astronaut", gray, face[0]), ("gray shifted", gray, (l + 10, t - 10, r + 10, b - 10)),
              ("gray clipped", gray, (l - 200, t, r - 200, b))]
    cases += [("chelsea", np.ascontiguousarray(data.chelsea()), (100, 40, 260, 200)),
              ("coffee", np.ascontiguousarray(data.coffee()), (200, 100, 400, 300)),
              ("degenerate box", astronaut, (200, 100, 200, 100)), ("inverted box", astronaut, (265, 166, 175, 76))]
    return cases


def test_points_equal_dlibs(ours, dlib_sp68, dlib_models, astronaut):
    cases = _cases(astronaut, dlib_models["hog"])
    assert len(cases) >= 20
    worst = 0.0
    for name, img, box in cases:
        got = ours(img, box)
        assert got.shape == (68, 2) and got.dtype == np.float64
        diff = float(np.abs(got - _dlib_points(dlib_sp68, img, box)).max())
        assert diff <= 1e-3, f"{name}: {box} differs by {diff} px"
        worst = max(worst, diff)
    assert worst == 0.0  # dlib's parts are integers; ours are the same integers


def test_random_boxes_equal_dlibs(ours, dlib_sp68, astronaut):
    rng = np.random.default_rng(3)
    gray = np.ascontiguousarray(astronaut.mean(axis=2).astype(np.uint8))
    for i in range(150):
        side = rng.uniform(30, 400)
        cx, cy = rng.uniform(-50, 560, 2)
        asp = rng.uniform(0.8, 1.25)
        box = tuple(int(round(v)) for v in (cx - side / 2, cy - asp * side / 2, cx + side / 2, cy + asp * side / 2))
        img = gray if i % 4 == 0 else astronaut
        assert np.array_equal(ours(img, box), _dlib_points(dlib_sp68, img, box)), box


def test_numpy_reference_equals_kernel(ours, astronaut):
    rng = np.random.default_rng(4)
    for i in range(6):
        x, y = (int(v) for v in rng.integers(-50, 400, 2))
        box = (x, y, x + int(rng.integers(40, 300)), y + int(rng.integers(40, 300)))
        img = astronaut if i % 2 else astronaut[:, :, 1].copy()
        assert np.array_equal(ert.predict_reference(ours.model, img, box), ours(img, box))


def test_inputs(ours, astronaut):
    box = (175, 76, 265, 166)
    ref = ours(astronaut, box)
    assert np.array_equal(ours(astronaut, dlib.rectangle(*box)), ref)  # dlib.rectangle
    assert np.array_equal(ours(astronaut, np.array(box)), ref)
    assert np.array_equal(ours(np.asfortranarray(astronaut), box), ref)  # any memory layout
    ro = astronaut.copy()
    ro.setflags(write=False)
    assert np.array_equal(ours(ro, box), ref)
    gray = astronaut[:, :, 0].copy()
    assert np.array_equal(ours(gray[:, :, None], box), ours(gray, box))
    for bad in (astronaut.astype(np.float32), astronaut[:, :, :2], np.zeros((4, 4, 4), np.uint8)):
        with pytest.raises(ValueError, match="unsupported image"):
            ours(bad, box)
    with pytest.raises(ValueError):
        ours(astronaut, (1, 2, 3))
    with pytest.raises(ValueError):
        ours(astronaut, (0, 0, float("nan"), 10))


# ------------------------------------------------------------------------------- the cache --
def test_cache_written_then_reused_without_parsing(cache, monkeypatch, ours, astronaut):
    first = ert.load_model(SP68)
    files = sorted(cache.glob("*.npz"))
    assert len(files) == 1 and files[0].stem.startswith("shape_predictor_68_face_landmarks-")
    with zipfile.ZipFile(files[0]) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    _no_parse(monkeypatch)
    again = ert.ShapePredictor.load(SP68)
    _same_model(again.model, first)
    assert not again.model.leaves.flags.writeable  # mapped from the archive
    box = (175, 76, 265, 166)
    assert np.array_equal(again(astronaut, box), ours(astronaut, box))


def test_cache_keyed_by_size_and_mtime(cache, tiny, tmp_path, monkeypatch):
    path = tmp_path / "model.dat"
    path.write_bytes(tiny[0].read_bytes())
    ert.load_model(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "a new file": parsed again
    calls = []
    real = ert.read_shape_predictor
    monkeypatch.setattr(ert, "read_shape_predictor", lambda p: calls.append(p) or real(p))
    ert.load_model(path)
    ert.load_model(path)
    (entry,) = cache.glob("model-*.npz")  # the entry of the old file is gone
    assert len(calls) == 1 and entry.stem == ert._cache_key(path)


def _damage(file, how: str) -> None:
    raw = bytearray(file.read_bytes())
    if how == "truncated":
        raw = raw[: len(raw) // 2]
    elif how == "garbage":
        raw = bytearray(b"not a zip file at all" * 10)
    elif how == "empty":
        raw = bytearray()
    elif how == "leaves flipped":  # a bit of the memory-mapped leaf values: only the checksum sees it
        with zipfile.ZipFile(file) as zf:
            info = zf.getinfo("leaves.npy")
        raw[info.header_offset + 30 + len(info.filename) + 300] ^= 0x04
    elif how == "foreign key":
        with zipfile.ZipFile(file) as zf:
            arrays = {n[:-4]: np.lib.format.read_array(zf.open(n)) for n in zf.namelist()}
        arrays["key"] = np.array("another-file")
        file.unlink()
        with open(file, "wb") as fh:
            np.savez(fh, **arrays)
        return
    file.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "leaves flipped", "foreign key"])
def test_corrupt_cache_is_rebuilt(cache, tiny, monkeypatch, how):
    path, sp, imgs, rects = tiny
    fresh = ert.read_shape_predictor(path)
    ert.load_model(path)
    (file,) = cache.glob("*.npz")
    _damage(file, how)
    _same_model(ert.load_model(path), fresh)  # parsed again
    _no_parse(monkeypatch)
    _same_model(ert.load_model(path), fresh)  # ... and rewritten: a hit now


def test_unusable_cache_still_loads(tmp_path, monkeypatch, tiny):
    path = tiny[0]
    fresh = ert.read_shape_predictor(path)
    (tmp_path / "file").write_text("a file where the cache folder should be")
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path / "file" / "cache"))  # mkdir fails
    _same_model(ert.load_model(path), fresh)
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path / "cache"))

    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    import facegcn.io.atomic as atomic

    monkeypatch.setattr(atomic, "atomic_open", refuse)  # the write fails
    _same_model(ert.load_model(path), fresh)
    assert not list((tmp_path / "cache" / "dlib-ert").glob("*.npz"))
    _same_model(ert.load_model(path, use_cache=False), fresh)


def test_threads_share_one_predictor(ours, astronaut):
    from concurrent.futures import ThreadPoolExecutor

    boxes = [(175 + i, 76 - i, 265 + i, 166 + 2 * i) for i in range(12)]
    ref = [ours(astronaut, b) for b in boxes]
    with ThreadPoolExecutor(2) as ex:
        got = list(ex.map(lambda b: ours(astronaut, b), boxes * 3))
    assert all(np.array_equal(g, ref[i % len(boxes)]) for i, g in enumerate(got))


def test_warm_up_runs(ours, astronaut):
    ert.warm_up()  # the dummy model goes through the same kernel signature as the real one
    assert ours(astronaut, (175, 76, 265, 166)).shape == (68, 2)
