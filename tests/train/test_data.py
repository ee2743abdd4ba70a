"""The training cache: synthetic writing, FaceDataset, flips, and `facegcn prepare` on real photos."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from facegcn.errors import ConfigError, ModelFileError
from facegcn.train.data import FLIP_68, FaceDataset, flip_sample, load_index, split_of


def test_synthetic_cache_has_exact_landmarks_and_masks(cache8):
    from facegcn.coarse.synthesis import FaceSynthesis
    from facegcn.morphable import load_model

    index = load_index(cache8)
    assert index["counts"] == {"ok": 8, "failed": 0}
    assert len(index["shards"]) == 3  # shard_size 3
    ds = FaceDataset(cache8, "all")
    assert len(ds) == 8
    s = ds[5]
    assert s["image"].shape == (3, 224, 224) and s["image"].dtype == torch.float32
    assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
    assert s["landmarks"].shape == (68, 2) and s["face_mask"].shape == (1, 224, 224)
    assert s["skin_weight"].shape == (1, 224, 224) and s["chip_transform"].shape == (2, 3)
    assert s["identity"].shape == (128,) and torch.isnan(s["identity"]).all()  # synthetic: no descriptor
    assert int(s["index"]) == 5
    m = load_model("ict")
    syn = FaceSynthesis(m)
    with torch.no_grad():
        st = syn.state(m.split(s["coeffs"][None]))
        r = syn.render(st)
    assert torch.allclose(st.landmarks[0], s["landmarks"], atol=1e-4)  # exact (float32) landmarks
    assert torch.equal((r.mask[0] > 0.5).float(), s["face_mask"])
    inside = s["face_mask"][0] > 0
    # the stored image is the render (uint8-quantised) inside the mask
    assert float((r.image[0].clamp(0, 1) - s["image"]).abs()[:, inside].max()) <= 0.5 / 255 + 1e-6


def test_dataset_splits_and_errors(cache32, tmp_path):
    index = load_index(cache32)
    tr, ho = FaceDataset(cache32, "train"), FaceDataset(cache32, "held_out")
    assert len(tr) + len(ho) == 32 and len(ho) == index["split"]["held_out"] > 0
    assert index["split"]["seed"] == 7 and index["split"]["held_out_fraction"] == 0.15
    # the split is a seeded hash of the source: same seed → same split, other seed → another one
    srcs = [it["source"] for it in index["items"]]
    assert [split_of(s, 7, 0.15) for s in srcs] == [it["split"] for it in index["items"]]
    assert [split_of(s, 8, 0.15) for s in srcs] != [split_of(s, 7, 0.15) for s in srcs]
    with pytest.raises(ConfigError):
        FaceDataset(cache32, "test")
    with pytest.raises(ModelFileError):
        FaceDataset(tmp_path)
    with pytest.raises(IndexError):
        tr[len(tr)]


def test_flip_is_a_consistent_mirror(cache8):
    ds = FaceDataset(cache8, "all")
    s = ds[2]
    f = flip_sample(s)
    assert sorted(FLIP_68.tolist()) == list(range(68))
    assert np.array_equal(FLIP_68[FLIP_68], np.arange(68))  # an involution
    assert torch.equal(f["image"], s["image"].flip(-1))
    # mirrored landmark i sits where the original's mirror partner was, reflected
    assert torch.allclose(f["landmarks"][36, 0], 223 - s["landmarks"][45, 0])
    assert torch.allclose(f["landmarks"][36, 1], s["landmarks"][45, 1])
    back = flip_sample(f)
    for k in ("image", "landmarks", "face_mask", "chip_transform"):
        assert torch.allclose(back[k], s[k], atol=1e-5), k
    # chip transform: a chip pixel maps to the mirrored aligned position
    p = torch.tensor([10.0, 20.0, 1.0])
    x, y = s["chip_transform"] @ p
    x2, y2 = f["chip_transform"] @ p
    assert torch.allclose(x2, 223 - x) and torch.allclose(y2, y)
    # the flip augmentation is a deterministic function of (seed, epoch, index)
    a = FaceDataset(cache8, "all", flip=True, seed=3)
    b = FaceDataset(cache8, "all", flip=True, seed=3)
    flips = []
    for e in range(3):
        a.set_epoch(e)
        b.set_epoch(e)
        row = []
        for i in range(len(a)):
            xa, xb = a[i]["image"], b[i]["image"]
            assert torch.equal(xa, xb)
            row.append(not torch.equal(xa, ds[i]["image"]))
        flips.append(row)
    assert any(any(r) for r in flips) and not all(all(r) for r in flips)


def _photo_folder(root):
    from PIL import Image
    from skimage import data

    a = np.ascontiguousarray(data.astronaut())
    (root / "sub").mkdir(parents=True)
    Image.fromarray(a).save(root / "a_full.png")
    Image.fromarray(a[:, ::-1].copy()).save(root / "b_flip.jpg", quality=92)
    Image.fromarray(a[10:420, 40:460].copy()).save(root / "sub" / "c_crop.png")
    (root / "d_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg" * 3)
    (root / "notes.txt").write_text("not an image")


def test_prepare_cli_on_real_photos_skips_corrupt_and_resumes(tmp_path, capsys):
    import typer
    from typer.testing import CliRunner

    from facegcn.cli.train import register

    photos = tmp_path / "photos"
    _photo_folder(photos)
    out = tmp_path / "cache"
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["prepare", str(photos), str(out), "--shard-size", "2", "--held-out", "0.4",
                              "--seed", "1", "-q"])
    assert res.exit_code == 0, res.output
    assert "3 face(s) cached" in res.output and "1 skipped" in res.output
    assert "skip d_corrupt.jpg:" in res.output  # one log line per bad file
    index = json.loads((out / "index.json").read_text())
    assert index["counts"] == {"ok": 3, "failed": 1}
    assert [it["source"] for it in index["items"]] == ["a_full.png", "b_flip.jpg", "sub/c_crop.png"]
    assert index["split"]["seed"] == 1
    rows = list(csv.reader((out / "failed.csv").open()))
    assert rows[0] == ["source", "error"] and len(rows) == 2 and rows[1][0] == "d_corrupt.jpg"
    ds = FaceDataset(out, "all")
    assert len(ds) == 3
    s = ds[0]
    assert s["face_mask"].sum() > 5000 and torch.isfinite(s["identity"]).all()
    assert abs(float(s["identity"].norm()) - 1.0) < 0.5  # a dlib descriptor
    # the flipped photo's landmarks mirror the original's
    f = ds[1]
    assert float((flip_sample(f)["landmarks"] - s["landmarks"]).abs().mean()) < 3.0

    # resumable: a second run writes nothing; a lost shard is redone alone
    res = runner.invoke(app, ["prepare", str(photos), str(out), "--shard-size", "2", "--held-out", "0.4",
                              "--seed", "1", "-q"])
    assert res.exit_code == 0 and "0 shard(s) written, 2 already done" in res.output
    (out / "shards" / "shard-00001.safetensors").unlink()
    from facegcn.train.prepare import prepare_cache

    calls = []

    def counting(path):
        from facegcn.frontend import observe

        calls.append(path.name)
        return observe(path)[0]

    s2 = prepare_cache(photos, out, shard_size=2, held_out=0.4, seed=1, progress=False, observe_fn=counting,
                       log=lambda m: None)
    assert calls == ["d_corrupt.jpg", "c_crop.png"]  # sorted paths, shards of 2: [a, b] [d, sub/c]
    assert s2.shards_written == 1 and s2.shards_skipped == 1 and s2.ok == 3
    assert json.loads((out / "index.json").read_text())["items"] == index["items"]


def test_prepare_rejects_bad_arguments(tmp_path):
    from facegcn.errors import InputError
    from facegcn.train.prepare import prepare_cache

    with pytest.raises(InputError):
        prepare_cache(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        prepare_cache(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ConfigError):
        prepare_cache(tmp_path / "empty", tmp_path / "out", held_out=1.5)
