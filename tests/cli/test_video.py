"""`facegcn video` and facegcn.apps.video: a synthetic clip end to end, the filters, the crop changes.

References: ffmpeg's own frame count of the written video (imageio-ffmpeg's count_frames),
trimesh's PLY reader for the mesh sequence, the camera's projection for :func:`transfer_pose`
(landmarks moved by the 2-D similarity vs landmarks of the transferred pose), and a known noisy
signal for the One Euro filter.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from facegcn.cli.reconstruct import build_config
from facegcn.apps.video import (
    EMAFilter,
    OneEuroFilter,
    VideoWriter,
    count_frames,
    crop_change,
    jitter,
    read_video,
    transfer_pose,
)

N_FRAMES, SIZE, FPS = 32, 256, 15


def tiny_config():
    cfg = build_config(fast=True, quiet=True, refine=False, texture_size=256)
    cfg.coarse.steps_rigid, cfg.coarse.steps_landmark, cfg.coarse.steps_photo, cfg.coarse.steps_identity = 15, 30, 10, 0
    cfg.threads = 1
    return cfg


def make_clip(path: Path, n: int = N_FRAMES, size: int = SIZE, fps: int = FPS) -> Path:
    """A synthetic clip of skimage's public-domain astronaut: a 256² window drifting by a few pixels
    and zooming by ±4 % (smooth motion, so frame-to-frame jitter comes from the tracking)."""
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut())
    cx, cy = 220.0, 125.0
    w = VideoWriter(path, fps, quality=8)
    for t in range(n):
        ph = 2 * math.pi * t / n
        z = 1.0 + 0.04 * math.sin(ph)
        dx, dy = 6 * math.sin(ph), 4 * math.cos(ph)
        half = size / 2 / z
        box = (cx + dx - half, cy + dy - half, cx + dx + half, cy + dy + half)
        w.write(np.asarray(img.transform((size, size), Image.EXTENT, box, Image.BILINEAR)))
    w.close()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("video-in") / "astronaut.mp4")


@pytest.fixture
def cli(monkeypatch):
    from facegcn.cli import main
    from facegcn.cli import video as video_cli
    from facegcn.cli.app import app

    monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))
    video_cli.register(app)

    def run(argv):
        threads = torch.get_num_threads()
        err, out = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                code = main(argv)
        finally:
            torch.set_num_threads(threads)
        return code, out.getvalue(), err.getvalue()

    return run


def test_clip_round_trip(clip):
    assert count_frames(clip) == N_FRAMES
    info, frames = read_video(clip)
    assert (info.width, info.height) == (SIZE, SIZE) and abs(info.fps - FPS) < 1e-6
    assert sum(1 for f in frames if f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8) == N_FRAMES


@pytest.mark.slow
def test_video_end_to_end(clip, tmp_path, cli, artifacts_dir):
    import trimesh
    from PIL import Image

    cfg = tmp_path / "config.json"
    cfg.write_text(tiny_config().to_json())
    out = tmp_path / "out"
    code, stdout, stderr = cli(["video", str(clip), "-o", str(out), "--config", str(cfg)])
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert f"{N_FRAMES}/{N_FRAMES}" in stderr and "video" in stderr  # the progress bar ran to the end
    # the side-by-side video: one output frame per input frame, photo | render
    assert count_frames(out / "side_by_side.mp4") == N_FRAMES
    info, frames = read_video(out / "side_by_side.mp4")
    assert (info.width, info.height) == (2 * SIZE, SIZE)
    first = next(frames)
    frames.close()
    Image.fromarray(first).save(artifacts_dir / "video_side_by_side_frame0.png")
    left, right = first[:, :SIZE].astype(int), first[:, SIZE:].astype(int)
    assert np.abs(left - right).mean() > 2  # the render is drawn over the right half
    # the mesh sequence
    meshes = sorted((out / "meshes").glob("frame_*.ply"))
    assert len(meshes) == N_FRAMES
    m0, m1 = (trimesh.load(meshes[i], process=False) for i in (0, N_FRAMES // 4))
    assert len(m0.vertices) == 9409 and len(m0.faces) == 18460
    assert not np.allclose(m0.vertices, m1.vertices)  # posed: the head moves with the clip
    assert (out / "keyframe" / "mesh.obj").is_file() and (out / "keyframe" / "coeffs.json").is_file()
    # tracking and report
    doc = json.loads((out / "tracking.json").read_text())
    assert len(doc["frames"]) == N_FRAMES and all(f["status"] == "ok" for f in doc["frames"])
    assert np.mean([f["landmark_px"] for f in doc["frames"]]) < 6.0
    ids = {tuple(np.round(doc["identity"], 6))}
    assert len(ids) == 1 and len(doc["identity"]) == 100  # one identity for the clip
    rep = json.loads((out / "report.json").read_text())
    jr, js = rep["jitter_raw"], rep["jitter_smoothed"]
    raw_pose = np.hypot(jr["angles"], jr["trans"])
    sm_pose = np.hypot(js["angles"], js["trans"])
    assert js["angles"] < jr["angles"] and sm_pose < raw_pose and js["exp"] < jr["exp"], rep
    # independent check of the report's numbers from the per-frame coefficients
    raw = np.array([f["raw"]["angles"] + f["raw"]["trans"] for f in doc["frames"]])
    sm = np.array([f["smoothed"]["angles"] + f["smoothed"]["trans"] for f in doc["frames"]])
    d2 = lambda s: np.abs(np.diff(s, 2, axis=0)).mean()  # noqa: E731
    assert d2(sm) < d2(raw)
    assert f"{N_FRAMES} frame(s)" in stdout


def test_bad_video_is_one_line_error(tmp_path, cli):
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video\n")
    code, _, err = cli(["video", str(bad), "-o", str(tmp_path / "out")])
    assert code == 3 and err.strip().startswith("error: ") and err.strip().count("\n") == 0
    assert "cannot decode as a video" in err
    code, _, err = cli(["video", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "out")])
    assert code == 3 and "no such file" in err


def test_video_without_a_face(tmp_path, cli):
    p = tmp_path / "grey.mp4"
    w = VideoWriter(p, 10)
    for k in range(4):
        w.write(np.full((64, 64, 3), 100 + 10 * k, np.uint8))
    w.close()
    cfg = tmp_path / "config.json"
    cfg.write_text(tiny_config().to_json())
    code, _, err = cli(["video", str(p), "-o", str(tmp_path / "out"), "--config", str(cfg), "-q"])
    assert code == 4 and "no face found in any of the 4 frame(s)" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ pieces
def test_one_euro_and_ema_reduce_jitter_with_bounded_lag():
    rng = np.random.default_rng(0)
    t = np.arange(120) / 30.0
    clean = np.stack([0.3 * np.sin(2 * np.pi * 0.5 * t), 0.1 * t], 1)
    noisy = clean + rng.normal(0, 0.02, clean.shape)
    for f in (OneEuroFilter(1.0, 1.0, 1.0), EMAFilter(0.4)):
        out = np.array([f(x, ti) for x, ti in zip(noisy, t)])
        assert jitter(out) < 0.5 * jitter(noisy)
        assert np.abs(out - clean)[30:].mean() < np.abs(noisy - clean)[30:].mean() * 1.5  # no runaway lag
    assert jitter(clean) < 0.1 * jitter(noisy)  # smooth motion is hardly jitter


def test_transfer_pose_matches_the_image_similarity():
    from facegcn.coarse.synthesis import FaceSynthesis
    from facegcn.morphable import load_model

    m = load_model("ict")
    syn = FaceSynthesis(m)
    c = m.layout.split(torch.zeros(1, m.layout.total))
    g = torch.Generator().manual_seed(1)
    c = replace(c, id=torch.randn(1, m.layout.id, generator=g) * 0.5,
                angles=torch.tensor([[0.1, -0.2, 0.05]]), trans=torch.tensor([[0.1, -0.05, 0.3]]))
    th, s, t = 0.06, 1.05, np.array([4.0, -3.0])
    A = s * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    S = np.hstack([A, t[:, None]])
    lm = syn.landmarks_only(c)[0].numpy()
    c2 = transfer_pose(c, S, syn.camera)
    lm2 = syn.landmarks_only(c2)[0].numpy()
    assert np.linalg.norm(lm2 - (lm @ A.T + t), axis=1).mean() < 0.6  # weak-perspective residual only
    o, o2 = syn.camera.project(c.trans)[0].numpy(), syn.camera.project(c2.trans)[0].numpy()
    np.testing.assert_allclose(o2, A @ o + t, atol=1e-3)  # exact for the model origin
    back = transfer_pose(c2, np.linalg.inv(np.vstack([S, [0, 0, 1]]))[:2], syn.camera)
    np.testing.assert_allclose(back.angles.numpy(), c.angles.numpy(), atol=1e-6)
    np.testing.assert_allclose(back.trans.numpy(), c.trans.numpy(), atol=1e-5)
    # crop_change composes photo → crop matrices
    M1 = np.array([[0.9, 0.1, 5.0], [-0.1, 0.9, 2.0]])
    M2 = np.array([[1.1, 0.0, -3.0], [0.0, 1.1, 4.0]])
    p = np.array([10.0, 20.0])
    q1 = M1[:, :2] @ p + M1[:, 2]
    S12 = crop_change(M1, M2)
    np.testing.assert_allclose(S12[:, :2] @ q1 + S12[:, 2], M2[:, :2] @ p + M2[:, 2])
