"""The on-disk cache of parsed TFLite graphs (facegcn.frontend.tflite_cache).

References: a graph parsed from the flatbuffer with ``cache=False`` (same parameters bit for bit,
same strides / memory format, same operator list with the same Python types, bitwise-equal
outputs on random inputs); a load with the flatbuffer parser and the ``tflite`` package disabled
(proof that a hit does not parse); hand-damaged cache files (a parse, then a rewritten entry).
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("tflite")
pytest.importorskip("safetensors")

from facegcn.errors import ModelFileError, OutputError  # noqa: E402
from facegcn.frontend import blazeface as bf  # noqa: E402
from facegcn.frontend import facemesh as fm  # noqa: E402
from facegcn.frontend import tflite_cache as tc  # noqa: E402
from facegcn.frontend.models import mediapipe_model_path  # noqa: E402
from facegcn.frontend.tflite_graph import TFLiteGraph  # noqa: E402

try:
    PATHS = {"face": mediapipe_model_path(fm.FACE_MODEL), "short": mediapipe_model_path(bf.SPECS["short"].model),
             "full": mediapipe_model_path(bf.SPECS["full"].model), "iris": mediapipe_model_path(fm.IRIS_MODEL)}
except ModelFileError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"MediaPipe model files not installed: {exc}", allow_module_level=True)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty FACEGCN_CACHE for the test; returns the TFLite cache folder."""
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tflite"


def _entry(cache_folder, path):
    digest = tc.source_digest(path.read_bytes())
    return cache_folder / f"{digest}-v{tc._CACHE_FORMAT}.json", cache_folder / f"{digest}-v{tc._CACHE_FORMAT}.safetensors"


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _no_parse(monkeypatch):
    """Make any flatbuffer parse fail: the parser raises and ``import tflite`` is refused."""
    def boom(*args, **kwargs):
        raise AssertionError("the flatbuffer was parsed")

    monkeypatch.setattr(TFLiteGraph, "_parse", boom)
    for name in [m for m in sys.modules if m == "tflite" or m.startswith("tflite.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tflite", None)  # `import tflite` now raises ImportError


def _count_parses(monkeypatch) -> list:
    calls = []
    real = TFLiteGraph._parse

    def spy(self, *args):
        calls.append(self.name)
        return real(self, *args)

    monkeypatch.setattr(TFLiteGraph, "_parse", spy)
    return calls


def _typed(v):
    """A value with its Python types spelled out (``==`` alone takes 1 == 1.0 == True)."""
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, [_typed(x) for x in v])
    if isinstance(v, dict):
        return ("dict", {k: _typed(x) for k, x in v.items()})
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.str, v.shape, v.tolist())
    return (type(v).__name__, v)


def assert_same_graph(a: TFLiteGraph, b: TFLiteGraph) -> None:
    assert list(a.weights) == list(b.weights)
    for key, wa in a.weights.items():
        wb = b.weights[key]
        assert wa.dtype == wb.dtype and wa.shape == wb.shape and wa.stride() == wb.stride(), key
        assert not wb.requires_grad and isinstance(wb, torch.nn.Parameter)
        assert wa.is_contiguous(memory_format=torch.channels_last) == wb.is_contiguous(memory_format=torch.channels_last)
        assert wa.is_contiguous() == wb.is_contiguous()
        assert torch.equal(wa, wb), key
    assert _typed(a.shapes) == _typed(b.shapes)
    for attr in ("name", "input_ids", "output_ids", "input_shapes", "output_shapes", "_free"):
        assert _typed(getattr(a, attr)) == _typed(getattr(b, attr)), attr
    assert len(a.ops) == len(b.ops)
    for oa, ob in zip(a.ops, b.ops):
        assert (oa.kind, _typed(oa.inputs), oa.output, _typed(oa.opts)) == (ob.kind, _typed(ob.inputs), ob.output, _typed(ob.opts))


def test_first_load_writes_the_entry_and_the_second_does_not_parse(cache, monkeypatch):
    path = PATHS["face"]
    js, st = _entry(cache, path)
    fresh = TFLiteGraph(path)
    assert js.is_file() and st.is_file()
    meta = json.loads(js.read_text())
    assert meta["format"] == tc._CACHE_FORMAT and meta["source_sha256"] == tc.source_digest(path.read_bytes())
    assert _files(cache) == sorted([js.name, st.name])  # no temporary left over
    stamp = (js.stat().st_mtime_ns, st.stat().st_mtime_ns)
    _no_parse(monkeypatch)
    cached = TFLiteGraph(path)
    assert_same_graph(fresh, cached)
    assert (js.stat().st_mtime_ns, st.stat().st_mtime_ns) == stamp  # a hit does not rewrite
    with pytest.raises(ImportError):  # the proof above holds: tflite really was unavailable
        import tflite  # noqa: F401


def test_cache_false_neither_reads_nor_writes(cache, monkeypatch):
    TFLiteGraph(PATHS["short"], cache=False)
    assert _files(cache) == []
    TFLiteGraph(PATHS["short"])
    calls = _count_parses(monkeypatch)
    TFLiteGraph(PATHS["short"], cache=False)
    assert calls == ["face_detection_short_range.tflite"]


def test_the_key_is_the_content(cache, tmp_path, monkeypatch):
    TFLiteGraph(PATHS["short"])
    copy = tmp_path / "renamed.tflite"
    shutil.copyfile(PATHS["short"], copy)
    _no_parse(monkeypatch)
    assert TFLiteGraph(copy).name == "renamed.tflite"


@pytest.mark.parametrize("kind", ["face", "short", "full", "iris"])
def test_cached_graph_equals_the_parsed_one(cache, monkeypatch, one_torch_thread, kind):
    path = PATHS[kind]
    TFLiteGraph(path)  # writes the entry
    fresh = TFLiteGraph(path, cache=False)
    _no_parse(monkeypatch)
    cached = TFLiteGraph(path)
    assert_same_graph(fresh, cached)
    if kind == "iris":
        return
    rng = np.random.default_rng(3)
    shape = fresh.input_shapes[0]
    with torch.no_grad():
        for batch in (1, 3):
            x = torch.from_numpy(rng.uniform(-1, 1, (batch, shape[3], shape[1], shape[2])).astype(np.float32))
            ya, yb = fresh(x), cached(x)
            assert len(ya) == len(yb) == len(fresh.output_ids)
            for a, b in zip(ya, yb):
                assert a.shape == b.shape and torch.equal(a, b)
                assert a.stride() == b.stride()


def _damage_json(js, st):
    js.write_bytes(js.read_bytes()[: js.stat().st_size // 2])


def _damage_safetensors(js, st):
    st.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!" + bytes(100))


def _truncate_safetensors(js, st):
    st.write_bytes(st.read_bytes()[:-1000])


def _drop_safetensors(js, st):
    st.unlink()


def _wrong_format(js, st):
    meta = json.loads(js.read_text())
    js.write_text(json.dumps({**meta, "format": tc._CACHE_FORMAT + 1}))


def _bad_operator(js, st):
    meta = json.loads(js.read_text())
    meta["ops"][0]["inputs"] = ["no-such-weight"]
    js.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", [_damage_json, _damage_safetensors, _truncate_safetensors, _drop_safetensors,
                                    _wrong_format, _bad_operator])
def test_a_damaged_entry_is_parsed_again_and_rewritten(cache, monkeypatch, damage):
    path = PATHS["face"]
    js, st = _entry(cache, path)
    reference = TFLiteGraph(path)
    good = (js.read_bytes(), st.read_bytes())
    damage(js, st)
    calls = _count_parses(monkeypatch)
    again = TFLiteGraph(path)
    assert calls == [path.name]
    assert_same_graph(reference, again)
    assert (js.read_bytes(), st.read_bytes()) == good  # rewritten (the entry is deterministic)
    assert_same_graph(reference, TFLiteGraph(path))
    assert calls == [path.name]  # ... and used again


def test_another_models_weights_are_not_taken(cache, monkeypatch):
    js, st = _entry(cache, PATHS["face"])
    other_js, other_st = _entry(cache, PATHS["iris"])
    face, _ = TFLiteGraph(PATHS["face"]), TFLiteGraph(PATHS["iris"])
    shutil.copyfile(other_st, st)
    calls = _count_parses(monkeypatch)
    assert_same_graph(face, TFLiteGraph(PATHS["face"]))
    assert calls == ["face_landmark.tflite"]


def test_an_unusable_cache_folder_still_loads(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path / "file" / "cache"))  # mkdir fails
    reference = TFLiteGraph(PATHS["short"], cache=False)
    assert_same_graph(reference, TFLiteGraph(PATHS["short"]))


@pytest.mark.parametrize("error", [OutputError("disk full"), OSError(30, "Read-only file system")])
def test_a_failing_write_still_loads(cache, monkeypatch, error):
    import facegcn.io.atomic as atomic

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(atomic, "atomic_write_bytes", fail)
    monkeypatch.setattr(atomic, "atomic_write_text", fail)
    reference = TFLiteGraph(PATHS["short"], cache=False)
    assert_same_graph(reference, TFLiteGraph(PATHS["short"]))
    assert _files(cache) == []


def test_an_entry_path_that_cannot_be_replaced_still_loads(cache):
    js, st = _entry(cache, PATHS["short"])
    st.mkdir(parents=True)  # os.replace onto a folder fails, even for root
    reference = TFLiteGraph(PATHS["short"], cache=False)
    assert_same_graph(reference, TFLiteGraph(PATHS["short"]))
    assert not js.exists()


def test_bad_model_files_keep_their_errors(cache, tmp_path):
    with pytest.raises(ModelFileError, match="cannot read"):
        TFLiteGraph(tmp_path / "missing.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="not a TFLite"):
        TFLiteGraph(tmp_path / "junk.tflite")
    good = PATHS["short"].read_bytes()
    (tmp_path / "cut.tflite").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelFileError, match="cannot parse"):
        TFLiteGraph(tmp_path / "cut.tflite")
    assert _files(cache) == []


def test_option_values_keep_their_types(cache, monkeypatch):
    """The tagged JSON encoding of operator options: tuples, numpy arrays and scalars, nesting."""
    opts = {"stride": (2, 1), "pads": (0, 1, 1, 0), "same": True, "value": -0.0, "inf": float("inf"),
            "arr": np.arange(6, dtype=np.int32).reshape(2, 3), "f16": np.array([1.5, -2.0], np.float16),
            "n": np.int64(7), "x": np.float32(0.1), "flag": np.bool_(True), "nested": [(1, 2), [3, (4,)], {"k": (5,)}],
            "none": None, "s": "ADD"}
    back = tc._decode(json.loads(json.dumps(tc._encode(opts))))
    assert _typed(back) == _typed(opts)
    assert type(back["x"]) is np.float32 and back["x"] == opts["x"]
    assert str(back["value"]) == "-0.0"
    with pytest.raises(TypeError):
        tc._encode({"bad": object()})

    graph = TFLiteGraph(PATHS["short"])  # a whole entry with such options round-trips too
    graph.ops[0].opts.update(extra=opts["nested"], arr=opts["arr"])
    digest_json = _entry(cache, PATHS["short"])[0]
    assert tc.save(graph, PATHS["short"].read_bytes()) and digest_json.is_file()
    _no_parse(monkeypatch)
    assert _typed(TFLiteGraph(PATHS["short"]).ops[0].opts) == _typed(graph.ops[0].opts)


def test_an_unsavable_option_skips_the_write(cache):
    graph = TFLiteGraph(PATHS["short"], cache=False)
    graph.ops[0].opts["bad"] = object()
    assert tc.save(graph, PATHS["short"].read_bytes()) is False
    assert _files(cache) == []
