"""The PyTorch port of dlib's face-recognition ResNet against dlib itself (an independent reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegcn.errors import InputError, ModelFileError
from facegcn.frontend import identity as I
from facegcn.frontend.dlib_format import architecture, read_dlib_resnet
from facegcn.frontend.models import RESNET, dlib_model_path


def _shape5(models, img, rect):
    return models["sp5"](img, rect)


def _augmented(astronaut, n=24, seed=0):
    """n random similarity warps (rotation, scale, shift, flips) with colour jitter, blur and noise,
    each with the dlib rectangle of the face mapped into it."""
    import dlib
    from scipy import ndimage
    from skimage.transform import SimilarityTransform, warp

    rng = np.random.default_rng(seed)
    face_c = np.array([220.0, 121.0])
    out = []
    for i in range(n):
        size = int(rng.integers(200, 360))
        scale = float(rng.uniform(0.6, 1.8))
        angle = float(np.deg2rad(rng.uniform(-20, 20)))
        centre = np.array([size / 2, size / 2]) + rng.uniform(-0.1, 0.1, 2) * size
        # photo -> augmented: rotate/scale about the face centre, put it at `centre`
        fwd = SimilarityTransform(scale=scale, rotation=angle)
        t = centre - fwd(face_c[None])[0]
        fwd = SimilarityTransform(scale=scale, rotation=angle, translation=t)
        img = warp(astronaut, fwd.inverse, output_shape=(size, size), order=1, mode="edge", preserve_range=True)
        if i % 3 == 1:
            img = img[:, ::-1]
        gains = rng.uniform(0.8, 1.2, 3)
        img = np.clip((img / 255.0) ** rng.uniform(0.8, 1.25) * 255.0 * gains, 0, 255)
        if i % 4 == 2:
            img = ndimage.gaussian_filter(img, sigma=(1.0, 1.0, 0))
        img = np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)
        corners = fwd(np.array([[175.0, 76.0], [265.0, 166.0], [175.0, 166.0], [265.0, 76.0]]))
        if i % 3 == 1:
            corners[:, 0] = size - 1 - corners[:, 0]
        x0, y0 = corners.min(0)
        x1, y1 = corners.max(0)
        c, half = (corners.min(0) + corners.max(0)) / 2, (x1 - x0 + y1 - y0) / 4 / (abs(np.cos(angle)) + abs(np.sin(angle)))
        rect = dlib.rectangle(int(c[0] - half), int(c[1] - half), int(c[0] + half), int(c[1] + half))
        out.append((np.ascontiguousarray(img), rect))
    return out


def test_parser_reads_the_whole_file():
    w = read_dlib_resnet(dlib_model_path(RESNET))
    assert len(w.convs) == 29 and len(w.affines) == 29 and w.fc.shape == (128, 256)
    assert w.convs[0][0].shape == (32, 3, 7, 7)
    assert w.convs[-1][0].shape == (256, 256, 3, 3)
    np.testing.assert_allclose(w.avg_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    assert sum(1 for layer in architecture() if layer[0] == "con") == 29


def test_parser_rejects_truncated_and_foreign_files(tmp_path):
    src = dlib_model_path(RESNET)
    cut = tmp_path / "cut.dat"
    with open(src, "rb") as fh:
        cut.write_bytes(fh.read(2_000_000))
    with pytest.raises(ModelFileError, match="cut.dat") as e:
        read_dlib_resnet(cut)
    assert "\n" not in str(e.value)
    other = tmp_path / "sp5.dat"
    other.write_bytes(b"\x01\x02hello" * 100)
    with pytest.raises(ModelFileError):
        read_dlib_resnet(other)
    with pytest.raises(ModelFileError):
        read_dlib_resnet(tmp_path / "missing.dat")


def test_converted_weights_are_cached_as_safetensors(tmp_path, monkeypatch):
    from safetensors import safe_open

    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path / "cache"))
    p = I.converted_weights_path()
    assert p.suffix == ".safetensors" and p.parent == tmp_path / "cache" / "frontend"
    with safe_open(str(p), framework="pt") as fh:
        assert fh.metadata()["format"] == "facegcn-dlib-resnet-v1"
        assert fh.get_tensor("fc.weight").shape == (128, 256)
    mtime = p.stat().st_mtime_ns
    assert I.converted_weights_path() == p and p.stat().st_mtime_ns == mtime  # reused
    p.write_bytes(b"corrupt")  # an unreadable cache file is rebuilt
    assert I.converted_weights_path() == p and p.stat().st_size > 20_000_000
    p.unlink()  # a missing one too
    assert I.converted_weights_path().is_file()


def test_port_matches_dlib_on_astronaut_and_augmented_crops(astronaut, dlib_models):
    import dlib

    rect = dlib_models["hog"](astronaut, 1)[0]
    cases = [(astronaut, rect)] + _augmented(astronaut, n=24)
    chips, ref = [], []
    for img, r in cases:
        shape = _shape5(dlib_models, img, r)
        ref.append(np.asarray(dlib_models["rec"].compute_face_descriptor(img, shape)))
        chips.append(np.asarray(dlib.get_face_chip(img, shape, size=150, padding=0.25)))
    with torch.no_grad():
        emb = I.embed(np.stack(chips), I.load_identity_net()).numpy().astype(np.float64)
    ref = np.stack(ref)
    max_abs = np.abs(emb - ref).max()
    cos = (emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
    assert len(cases) >= 21
    assert max_abs <= 1e-3, max_abs
    assert cos.min() >= 0.9999, cos.min()
    # the augmentations really change the descriptor (the test is not vacuous)
    assert np.linalg.norm(ref - ref[0], axis=1)[1:].max() > 0.1


def test_face_chip_transform_is_dlibs(astronaut, dlib_models):
    import dlib

    rect = dlib_models["hog"](astronaut, 1)[0]
    shape = _shape5(dlib_models, astronaut, rect)
    pts = np.array([[p.x, p.y] for p in shape.parts()], float)
    m = I.face_chip_transform(pts)
    cd = dlib.get_face_chip_details(shape, 150, 0.25)
    r = cd.rect
    centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
    c, s = np.cos(cd.angle), np.sin(cd.angle)
    rot = np.array([[c, -s], [s, c]])
    tl = rot @ (np.array([r.left(), r.top()]) - centre) + centre
    br = rot @ (np.array([r.right(), r.bottom()]) - centre) + centre
    np.testing.assert_allclose(m @ [0, 0, 1], tl, atol=1e-6)
    np.testing.assert_allclose(m @ [149, 149, 1], br, atol=1e-6)

    # differentiable resampling reproduces dlib's chip up to dlib's truncation to uint8
    chip_dlib = np.asarray(dlib.get_face_chip(astronaut, shape, size=150, padding=0.25)).astype(np.float64)
    img = torch.tensor(astronaut).permute(2, 0, 1).float() / 255.0
    chip = I.chip_from_aligned(img, m)[0].permute(1, 2, 0).numpy() * 255.0
    assert np.abs(np.floor(chip + 1e-3) - chip_dlib).mean() < 0.01
    assert np.abs(chip - chip_dlib).max() <= 1.01


def test_identity_from_aligned_crop_matches_photo_identity(obs_dlib):
    chip = I.chip_from_aligned(obs_dlib.image[None], obs_dlib.chip_transform)
    assert chip.shape == (1, 3, 150, 150)
    with torch.no_grad():
        e = I.embed(chip)[0]
    cos = torch.nn.functional.cosine_similarity(e, obs_dlib.identity, dim=0)
    assert cos > 0.995  # only resampling differs (photo → 224 crop → chip vs photo → chip)
    # and the canonical chip transform gives a usable chip too
    with torch.no_grad():
        e2 = I.embed(I.chip_from_aligned(obs_dlib.image, I.canonical_chip_transform()))[0]
    assert torch.nn.functional.cosine_similarity(e2, obs_dlib.identity, dim=0) > 0.95


def test_gradients_match_finite_differences(astronaut, dlib_models):
    import dlib

    torch.manual_seed(0)
    net = I.load_identity_net(dtype=torch.float64)
    rect = dlib_models["hog"](astronaut, 1)[0]
    shape = _shape5(dlib_models, astronaut, rect)
    chip = torch.from_numpy(np.asarray(dlib.get_face_chip(astronaut, shape, 150, 0.25))).permute(2, 0, 1)
    x = (chip.double() / 255.0)[None].requires_grad_(True)
    w = torch.randn(128, dtype=torch.float64)

    def f(inp):
        return (net(inp)[0] * w).sum()

    f(x).backward()
    g = x.grad[0]
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    eps = 1e-6
    pixels = [(0, 75, 75), (1, 60, 40), (2, 100, 90), (1, 120, 60)]
    batch = x.detach().repeat(2 * len(pixels), 1, 1, 1)
    for i, (c, yy, xx) in enumerate(pixels):
        batch[2 * i, c, yy, xx] += eps
        batch[2 * i + 1, c, yy, xx] -= eps
    with torch.no_grad():
        f_all = net(batch) @ w  # one batched float64 forward for all the central differences
    for i, (c, yy, xx) in enumerate(pixels):
        fd = (f_all[2 * i] - f_all[2 * i + 1]) / (2 * eps)
        assert abs(fd - g[c, yy, xx]) <= 1e-6 + 1e-4 * abs(fd), (c, yy, xx, float(fd), float(g[c, yy, xx]))


def test_gradient_flows_through_aligned_path(obs_dlib):
    img = obs_dlib.image.clone()[None].requires_grad_(True)
    e = I.embed_aligned(img, obs_dlib.chip_transform)
    loss = 1 - torch.nn.functional.cosine_similarity(e[0], obs_dlib.identity, dim=0)
    loss.backward()
    g = img.grad[0].abs().sum(0)
    assert torch.isfinite(g).all()
    assert g[112, 112] > 0 and g[:5, :5].sum() == 0  # inside the chip only


def test_embed_input_forms_and_errors(obs_dlib):
    chip = I.chip_from_aligned(obs_dlib.image, obs_dlib.chip_transform)
    u8 = (chip[0].permute(1, 2, 0) * 255).round().to(torch.uint8)
    with torch.no_grad():
        a = I.embed(chip)
        b = I.embed(u8.numpy())
        c = I.embed(u8)
    assert a.shape == b.shape == c.shape == (1, 128)
    assert torch.allclose(b, c, atol=1e-6) and torch.allclose(a, b, atol=2e-3)
    with pytest.raises(InputError):
        I.load_identity_net()(torch.zeros(1, 4, 150, 150))
    with pytest.raises(InputError):
        I.chip_from_aligned(torch.zeros(2, 224, 224), obs_dlib.chip_transform)


@pytest.mark.gpu
def test_port_on_gpu_matches_cpu(obs_dlib):
    chip = I.chip_from_aligned(obs_dlib.image, obs_dlib.chip_transform)
    with torch.no_grad():
        cpu = I.embed(chip)
        gpu = I.embed(chip.cuda(), I.load_identity_net(device="cuda")).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4)
