"""Video → per-frame 3D faces with one shared identity, temporally smoothed, as a mesh sequence
and a side-by-side video (photo | render).

How a clip is processed (:func:`reconstruct_video`):

1. **Identity** — the first ``key_frames`` frames with a face (found by a first pass over the
   clip that stops there; no frame is buffered) get the full single-photo reconstruction
   (:class:`~facegcn.pipeline.Reconstructor`, including texture refinement when
   enabled); their identity and albedo coefficients are averaged and then *fixed* for the whole
   clip (the first key frame's outputs are also written in full to ``OUT/keyframe/``).
2. **Tracking** — every frame is observed (detection, 68 landmarks, alignment and face mask; no
   identity embedding) and fitted with identity/albedo fixed: only pose, expression and SH light
   move, initialised from the previous frame's fit (:func:`track_frame`: ``track_steps``
   landmark steps, then ``photo_steps`` photometric steps, Adam with small per-group step sizes,
   plus a temporal prior ``temporal_weight·|exp − exp_previous|²`` that damps expression flicker
   without measurably raising the landmark error).
   When several faces are visible the one nearest to the previous face is followed. A frame in
   which no face is found keeps the previous coefficients (status ``"no_face"``).
3. **One camera frame** — each frame is fitted in its own 224² aligned crop; its pose is carried
   into the reference crop (the first key frame's) with :func:`transfer_pose`, which turns the 2-D
   similarity between the two crops into a rotation about the optical axis, a change of depth
   and a shift (exact for the rotation and for the face's origin; weak-perspective for the rest).
   Smoothing and the mesh sequence use this common frame. Tracking runs with ``threads`` torch
   and render threads (default 1: its tensors are small, and more threads mostly add contention).
4. **Smoothing** — pose (angles, translation), expression and light are filtered over time with
   the *One Euro filter* (Casiez, Roussel, Vogel, CHI 2012): a first-order low-pass whose cut-off
   rises with the signal's speed, ``fc = min_cutoff + beta·|dx/dt|``, so still faces lose their
   jitter while fast motion keeps little lag (``smoothing="ema"``: a fixed exponential moving
   average ``y = a·x + (1 − a)·y_prev``; ``"none"``: raw fits). Units: seconds (from the video's
   frame rate), radians, decimetres, blendshape weights.
5. **Outputs** (``OUT/``): ``meshes/frame_NNNNNN.ply`` (or ``.obj``) — the smoothed face per
   processed frame, posed in the reference camera frame (camera at (0, 0, 1 m) looking down −z,
   metres; ``posed=False`` writes the canonical pose), vertex colours = the shared albedo;
   ``side_by_side.mp4`` — each frame next to the smoothed render composited on it (H.264 through
   imageio-ffmpeg's bundled ffmpeg); ``tracking.json`` — per-frame raw and smoothed
   coefficients, fit errors and status; ``report.json`` — counts, timings and the jitter of raw
   vs smoothed pose (:func:`jitter`: RMS second difference per frame).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from facegcn.errors import ConfigError, InputError, NoFaceError, OutputError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"})


@dataclass
class VideoOptions:
    key_frames: int = 1  # frames fitted fully for the shared identity (averaged)
    track_steps: int = 40  # landmark steps per frame (pose + expression)
    photo_steps: int = 4  # photometric steps per frame (pose + expression + light)
    lr_pose: float = 0.004  # Adam step sizes per group (radians / decimetres / weights / SH)
    lr_exp: float = 0.01
    lr_sh: float = 0.01
    temporal_weight: float = 0.01  # tracking prior: weight of |exp - previous frame's exp|^2
    smoothing: str = "one-euro"  # "one-euro", "ema" or "none"
    min_cutoff: float = 1.0  # One Euro: Hz at rest
    beta: float = 1.0  # One Euro: speed coefficient
    d_cutoff: float = 1.0  # One Euro: Hz of the derivative's own low-pass
    ema_alpha: float = 0.4  # EMA weight of the newest value
    max_frames: int | None = None  # stop after this many processed frames
    stride: int = 1  # process every stride-th frame
    max_side: int = 1280  # frames with a longer side are downscaled first (0 = never)
    mesh_format: str = "ply"  # "ply", "obj" or "none"
    posed: bool = True  # meshes posed in the reference camera frame (False: canonical pose)
    side_by_side: bool = True
    fps: float | None = None  # output frame rate (default: input fps / stride)
    quality: float = 7.0  # imageio-ffmpeg quality 0..10
    threads: int = 1  # torch/render threads while tracking (small tensors: threads only add contention); 0 = as is

    def validate(self) -> "VideoOptions":
        if self.smoothing not in ("one-euro", "ema", "none"):
            raise ConfigError(f"unknown smoothing {self.smoothing!r} (choose one-euro, ema or none)")
        if self.mesh_format not in ("ply", "obj", "none"):
            raise ConfigError(f"unknown mesh format {self.mesh_format!r} (choose ply, obj or none)")
        if self.key_frames < 1 or self.stride < 1:
            raise ConfigError("key frames and stride must be at least 1")
        if self.track_steps < 0 or self.photo_steps < 0:
            raise ConfigError("tracking steps must be >= 0")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError("max frames must be at least 1")
        if self.threads < 0:
            raise ConfigError("threads must be >= 0")
        if not 0 < self.ema_alpha <= 1:
            raise ConfigError("ema alpha must be in (0, 1]")
        if self.min_cutoff <= 0 or self.beta < 0 or self.d_cutoff <= 0:
            raise ConfigError("one-euro cut-offs must be > 0 and beta >= 0")
        return self


# ----------------------------------------------------------------------------- video I/O
@dataclass
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float
    n_frames: int | None  # from the container; may be approximate or unknown


def _open_video(p: Path):
    import imageio_ffmpeg

    if not p.is_file():
        raise InputError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file (0 bytes)")
    gen = imageio_ffmpeg.read_frames(str(p), pix_fmt="rgb24")
    try:
        meta = next(gen)
        if not meta.get("size"):
            raise ValueError("no video stream")
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as exc:
        gen.close()
        detail = " ".join(str(exc).split())
        detail = detail[-200:] if detail else type(exc).__name__
        raise InputError(f"{p}: cannot decode as a video ({detail})") from None
    return gen, meta


def probe_video(path: str | os.PathLike) -> dict:
    """Check that ``path`` opens as a video; returns ffmpeg's metadata (size, fps, duration, ...)."""
    gen, meta = _open_video(Path(path))
    gen.close()
    return meta


def read_video(path: str | os.PathLike, *, max_side: int = 0) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """Open a video with imageio-ffmpeg's bundled ffmpeg → (info, iterator of uint8 (H,W,3) frames).

    Unreadable files raise :class:`InputError` (one line)."""
    p = Path(path)
    gen, meta = _open_video(p)
    w, h = (int(v) for v in meta["size"])
    fps = float(meta.get("fps") or 0) or 25.0
    nframes = meta.get("nframes")
    n = int(nframes) if isinstance(nframes, (int, float)) and math.isfinite(nframes) and nframes > 0 else None
    if n is None and meta.get("duration"):
        n = int(round(float(meta["duration"]) * fps)) or None
    scale = 1.0
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
    ow, oh = (max(2, int(round(w * scale))), max(2, int(round(h * scale)))) if scale != 1.0 else (w, h)
    info = VideoInfo(str(p), ow, oh, fps, n)

    def frames() -> Iterator[np.ndarray]:
        from PIL import Image

        try:
            for raw in gen:
                a = np.frombuffer(raw, np.uint8)
                if a.size != w * h * 3:  # a truncated last frame
                    break
                a = a.reshape(h, w, 3)
                if scale != 1.0:
                    a = np.asarray(Image.fromarray(a).resize((ow, oh), Image.BILINEAR))
                yield a
        except (OSError, RuntimeError) as exc:
            raise InputError(f"{p}: video decoding failed ({' '.join(str(exc).split())[-200:]})") from None
        finally:
            gen.close()

    return info, frames()


class VideoWriter:
    """H.264 (yuv420p) writer via imageio-ffmpeg; frames are padded to even sizes. The file appears
    under its name only when :meth:`close` succeeds (written to a temporary name, then renamed)."""

    def __init__(self, path: str | os.PathLike, fps: float, quality: float = 7.0):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.fps = float(fps)
        self.quality = quality
        self._gen = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        import imageio_ffmpeg

        h, w = frame.shape[:2]
        H, W = h + (h % 2), w + (w % 2)
        if self._gen is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size = (W, H)
            self._gen = imageio_ffmpeg.write_frames(
                str(self.tmp), (W, H), fps=self.fps, codec="libx264", pix_fmt_out="yuv420p",
                quality=self.quality, macro_block_size=2, ffmpeg_log_level="error",
                output_params=["-movflags", "+faststart"])
            self._gen.send(None)
        if (W, H) != self._size:
            raise OutputError(f"{self.path}: frame size changed from {self._size} to {(W, H)}")
        if (H, W) != (h, w):
            frame = np.pad(frame, ((0, H - h), (0, W - w), (0, 0)), mode="edge")
        try:
            self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        except (OSError, RuntimeError) as exc:
            raise OutputError(f"cannot write {self.path}: {' '.join(str(exc).split())[-200:]}") from None
        self.frames += 1

    def close(self) -> Path | None:
        if self._gen is None:
            return None
        try:
            self._gen.close()
        except (OSError, RuntimeError) as exc:
            raise OutputError(f"cannot write {self.path}: {' '.join(str(exc).split())[-200:]}") from None
        self._gen = None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._gen is not None:
            try:
                self._gen.close()
            except Exception:  # noqa: BLE001 - best effort
                pass
            self._gen = None
        try:
            self.tmp.unlink()
        except OSError:
            pass


def count_frames(path: str | os.PathLike) -> int:
    """Exact number of decodable frames (decodes the whole file)."""
    import imageio_ffmpeg

    return int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])


# ------------------------------------------------------------------------------ filters
class OneEuroFilter:
    """The One Euro filter (Casiez et al. 2012) on vectors; ``t`` in seconds."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.x_prev: np.ndarray | None = None
        self.dx_prev: np.ndarray | None = None
        self.t_prev = 0.0

    @staticmethod
    def _alpha(dt: float, cutoff):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x_prev is None:
            self.x_prev, self.dx_prev, self.t_prev = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = max(t - self.t_prev, 1e-6)
        dx = (x - self.x_prev) / dt
        a_d = self._alpha(dt, self.d_cutoff)
        dx_hat = a_d * dx + (1 - a_d) * self.dx_prev
        a = self._alpha(dt, self.min_cutoff + self.beta * np.abs(dx_hat))
        x_hat = a * x + (1 - a) * self.x_prev
        self.x_prev, self.dx_prev, self.t_prev = x_hat, dx_hat, t
        return x_hat.copy()


class EMAFilter:
    def __init__(self, alpha: float = 0.4):
        self.alpha = float(alpha)
        self.y: np.ndarray | None = None

    def __call__(self, x: np.ndarray, t: float = 0.0) -> np.ndarray:
        x = np.asarray(x, np.float64)
        self.y = x.copy() if self.y is None else self.alpha * x + (1 - self.alpha) * self.y
        return self.y.copy()


class _NoFilter:
    def __call__(self, x, t=0.0):
        return np.asarray(x, np.float64).copy()


def make_filter(opts: VideoOptions):
    if opts.smoothing == "one-euro":
        return OneEuroFilter(opts.min_cutoff, opts.beta, opts.d_cutoff)
    if opts.smoothing == "ema":
        return EMAFilter(opts.ema_alpha)
    return _NoFilter()


def jitter(seq: np.ndarray) -> float:
    """Frame-to-frame jitter of a (T, D) sequence: RMS over frames of the second difference's norm
    (zero for constant velocity, so smooth motion does not count)."""
    s = np.asarray(seq, np.float64)
    if len(s) < 3:
        return 0.0
    d2 = s[2:] - 2 * s[1:-1] + s[:-2]
    return float(np.sqrt((np.linalg.norm(d2.reshape(len(d2), -1), axis=1) ** 2).mean()))


# ---------------------------------------------------------------- aligned-frame changes
def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(m, np.float64), [0.0, 0.0, 1.0]])


def crop_change(src_matrix: np.ndarray, dst_matrix: np.ndarray) -> np.ndarray:
    """2x3 similarity mapping pixels of the crop aligned by ``src_matrix`` (photo → crop) to the crop
    aligned by ``dst_matrix``."""
    return (_h(dst_matrix) @ np.linalg.inv(_h(src_matrix)))[:2]


def transfer_pose(c, S: np.ndarray, camera):
    """Carry coefficients fitted in one aligned crop into another, ``S`` (2x3 similarity) mapping the
    first crop's pixels to the second's. Only ``angles`` and ``trans`` change: the image rotation
    becomes a rotation about the optical axis (exact), the scale a change of depth and the shift a
    translation (exact for the model origin, weak-perspective for the rest of the face)."""
    S = np.asarray(S, np.float64)
    A, t = S[:, :2], S[:, 2]
    s = float(math.sqrt(abs(np.linalg.det(A))))
    theta = math.atan2(A[1, 0], A[0, 0])
    cx, cy = camera.center
    ctr = np.array([cx, cy])
    d = A @ ctr + t - ctr
    ang = c.angles.detach().clone()
    tr = c.trans.detach().clone().double()
    phi = -theta  # image rotation θ (rows down) = rotation by −θ about the camera's z axis
    cph, sph = math.cos(phi), math.sin(phi)
    ang[:, 2] = ang[:, 2] + phi
    x, y = tr[:, 0].clone(), tr[:, 1].clone()
    tr[:, 0], tr[:, 1] = cph * x - sph * y, sph * x + cph * y
    zc = (camera.distance - tr[:, 2]) / s
    tr[:, 2] = camera.distance - zc
    tr[:, 0] = tr[:, 0] + d[0] * zc / camera.fx
    tr[:, 1] = tr[:, 1] - d[1] * zc / camera.fy
    return replace(c, angles=ang, trans=tr.to(c.trans.dtype))


# ------------------------------------------------------------------------------ tracking
def track_frame(rec, obs, init, id_coeff, tex_coeff, opts: VideoOptions, albedo=None):
    """Fit pose, expression and light of one observed frame with identity/albedo fixed.

    ``init``: Coefficients in this frame's aligned crop (e.g. the previous fit carried over with
    :func:`transfer_pose`). Returns (Coefficients, {"landmark_px": mean landmark error})."""
    import torch

    from facegcn.morphable import Coefficients

    syn, loss, model = rec.fitter.syn, rec.fitter.loss, rec.model
    dev = rec.device
    img = obs.image[None].to(dev)
    lm = torch.as_tensor(obs.landmarks, dtype=torch.float32, device=dev)[None]
    fm = obs.face_mask.to(dev, torch.float32)[None, None]
    idc, texc = id_coeff.to(dev).detach(), tex_coeff.to(dev).detach()
    if albedo is None:
        with torch.no_grad():
            albedo = model.albedo(texc)
    p = {k: getattr(init, k).detach().to(dev).clone().requires_grad_(True) for k in ("angles", "trans", "exp", "sh")}
    box = getattr(rec.fitter, "box_exp", False)
    exp0 = p["exp"].detach().clone()

    def coeffs():
        return Coefficients(id=idc, exp=p["exp"], tex=texc, angles=p["angles"], sh=p["sh"], trans=p["trans"])

    def run(steps: int, photo: bool):
        if steps <= 0:
            return
        groups = [{"params": [p["angles"], p["trans"]], "lr": opts.lr_pose}, {"params": [p["exp"]], "lr": opts.lr_exp}]
        if photo:
            groups.append({"params": [p["sh"]], "lr": opts.lr_sh})
        opt = torch.optim.Adam(groups)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            c = coeffs()
            if photo:
                st = syn.state(c, albedo=albedo)
                r = syn.render(st)
                lt = loss(c, use={"landmark", "photo", "reg", "gamma"}, lm_pred=st.landmarks, lm_target=lm,
                          render=r.image, photo=img, mask=r.mask * fm)
            else:
                lt = loss(c, use={"landmark", "reg"}, lm_pred=syn.landmarks_only(c), lm_target=lm)
            total = lt.total
            if opts.temporal_weight > 0:
                total = total + opts.temporal_weight * ((p["exp"] - exp0) ** 2).sum()
            total.backward()
            opt.step()
            if box:
                with torch.no_grad():
                    p["exp"].clamp_(0.0, 1.0)

    run(opts.track_steps, photo=False)
    run(opts.photo_steps, photo=True)
    with torch.no_grad():
        c = coeffs().detach()
        err = float((syn.landmarks_only(c)[0] - lm[0]).norm(dim=-1).mean())
    return c, {"landmark_px": err}


def _pick_face(observations, prev_box):
    if prev_box is None or len(observations) == 1:
        return observations[0]
    pc = (prev_box[:2] + prev_box[2:]) / 2
    return min(observations, key=lambda o: float(np.linalg.norm((o.box[:2] + o.box[2:]) / 2 - pc)))


# --------------------------------------------------------------------------- the clip
@dataclass
class VideoResult:
    out: Path
    info: VideoInfo
    frames: list[dict]
    files: dict[str, str]
    jitter_raw: dict[str, float]
    jitter_smoothed: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.frames)


def _vec(c) -> dict[str, np.ndarray]:
    return {k: getattr(c, k).detach().cpu().double().numpy()[0] for k in ("angles", "trans", "exp", "sh")}


def reconstruct_video(rec, video: str | os.PathLike, out: str | os.PathLike, options: VideoOptions | None = None,
                      *, progress: bool | None = None) -> VideoResult:
    """Process a clip with a loaded :class:`~facegcn.pipeline.Reconstructor` (see the module doc)."""
    import torch
    from tqdm.auto import tqdm

    from facegcn.frontend import FrontendConfig, observe, warp_to_photo
    from facegcn.io.atomic import atomic_write_text
    from facegcn.io.image import Photo
    from facegcn.io.mesh import write_obj, write_ply
    from facegcn.morphable import Coefficients
    from facegcn.pipeline import EXPORT_SCALE
    from facegcn.render import rigid_transform

    opts = (options or VideoOptions()).validate()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    show = rec.cfg.progress if progress is None else progress
    info, frames_it = read_video(video, max_side=opts.max_side)
    fps_out = opts.fps or info.fps / opts.stride
    syn, model, cam = rec.fitter.syn, rec.model, rec.fitter.syn.camera
    fe_cfg = FrontendConfig(identity=None)
    detector = rec.cfg.frontend.detector
    timings = {"keyframes_s": 0.0, "observe_s": 0.0, "track_s": 0.0, "render_s": 0.0, "write_s": 0.0}
    t_all = time.perf_counter()

    total = info.n_frames
    if total is not None:
        total = -(-total // opts.stride)
        if opts.max_frames:
            total = min(total, opts.max_frames)

    def selected(frames) -> Iterator[tuple[int, np.ndarray]]:
        k = 0
        for i, fr in enumerate(frames):
            if i % opts.stride:
                continue
            yield i, fr
            k += 1
            if opts.max_frames and k >= opts.max_frames:
                break

    # 1. identity: full reconstructions of the first key frames with a face (first pass, stops early)
    keys: list = []  # Reconstruction per key frame
    key_of: dict[int, int] = {}
    seen = 0
    bar = tqdm(total=total, desc="video", unit="frame", disable=not show, file=sys.stderr, dynamic_ncols=True)
    bar.set_postfix_str("fitting the key frame" + ("s" if opts.key_frames > 1 else ""))
    try:
        for i, fr in selected(frames_it):
            seen += 1
            t0 = time.perf_counter()
            try:
                res = rec(Photo(fr, Path(f"{Path(video).name}#{i}")))
                key_of[i] = len(keys)
                keys.append(res[0])
            except NoFaceError:
                pass
            timings["keyframes_s"] += time.perf_counter() - t0
            if len(keys) >= opts.key_frames:
                break
    except BaseException:
        bar.close()
        raise
    finally:
        frames_it.close()
    if not keys:
        bar.close()
        if not seen:
            raise InputError(f"{video}: the video has no frames")
        raise NoFaceError(f"{video}: no face found in any of the {seen} frame(s)")
    key0 = keys[0]
    id_shared = torch.stack([k.coarse.coeffs.id for k in keys]).mean(0)
    tex_shared = torch.stack([k.coarse.coeffs.tex for k in keys]).mean(0)
    if len(keys) == 1 and key0.refined_albedo is not None:
        albedo = key0.refined_albedo.detach().to(rec.device)[None]
    else:
        with torch.no_grad():
            albedo = model.albedo(tex_shared.to(rec.device))
    key_files = rec.write(key0, out / "keyframe")
    M_ref = np.asarray(key0.observation.transform, np.float64)
    first_key_frame = next(i for i, k in key_of.items() if k == 0)

    mesh_dir = out / "meshes"
    if opts.mesh_format != "none":
        mesh_dir.mkdir(parents=True, exist_ok=True)
    writer = VideoWriter(out / "side_by_side.mp4", fps_out, opts.quality) if opts.side_by_side else None
    filt = make_filter(opts)
    faces_np = model.faces.cpu().numpy()
    colors = albedo[0].detach().clamp(0, 1).cpu()

    records: list[dict] = []
    prev = None  # (Coefficients in their crop, crop matrix)
    prev_box = np.asarray(key0.observation.box, np.float64)  # follow the key frame's face

    def process(i: int, fr: np.ndarray) -> None:
        nonlocal prev, prev_box
        H, W = fr.shape[:2]
        t0 = time.perf_counter()
        status = "ok"
        obs = None
        if i in key_of:  # already observed by the full reconstruction
            obs = keys[key_of[i]].observation
        else:
            try:
                obs = _pick_face(observe(Photo(fr), detector=detector, all_faces=True, config=fe_cfg), prev_box)
            except NoFaceError:
                status = "no_face"
        t1 = time.perf_counter()
        timings["observe_s"] += t1 - t0
        fit_err = None
        if obs is not None:
            M = np.asarray(obs.transform, np.float64)
            if i in key_of:  # start from this key frame's own full fit (in its own crop)
                kc = keys[key_of[i]].coarse.coeffs
                init = replace(kc, id=id_shared, tex=tex_shared)
            elif prev is not None:
                init = transfer_pose(prev[0], crop_change(prev[1], M), cam)
            else:  # frames before the first key frame: start from the first key frame
                init = transfer_pose(replace(key0.coarse.coeffs, id=id_shared, tex=tex_shared),
                                     crop_change(M_ref, M), cam)
            c, info_fit = track_frame(rec, obs, init, id_shared, tex_shared, opts, albedo=albedo)
            fit_err = info_fit["landmark_px"]
            prev, prev_box = (c, M), obs.box
        elif prev is None:
            status = "no_face"
        timings["track_s"] += time.perf_counter() - t1
        rec_row: dict = {"index": i, "time_s": i / info.fps, "status": status, "landmark_px": fit_err}
        if prev is None:  # nothing to show yet (no face seen before this frame)
            rec_row.update(raw=None, smoothed=None)
            if writer is not None:
                writer.write(np.concatenate([fr, fr], axis=1))
            records.append(rec_row)
            return
        c_crop, M_crop = prev
        raw_ref = _vec(transfer_pose(c_crop, crop_change(M_crop, M_ref), cam))
        flat = np.concatenate([raw_ref[k] for k in ("angles", "trans", "exp", "sh")])
        sm = filt(flat, i / info.fps)
        sizes = [len(raw_ref[k]) for k in ("angles", "trans", "exp", "sh")]
        parts = np.split(sm, np.cumsum(sizes)[:-1])
        sm_ref = dict(zip(("angles", "trans", "exp", "sh"), parts))
        if getattr(rec.fitter, "box_exp", False):
            sm_ref["exp"] = np.clip(sm_ref["exp"], 0.0, 1.0)
        rec_row.update(raw={k: v.tolist() for k, v in raw_ref.items()},
                       smoothed={k: v.tolist() for k, v in sm_ref.items()})
        t2 = time.perf_counter()
        dev = rec.device
        c_sm_ref = Coefficients(id=id_shared.to(dev), tex=tex_shared.to(dev),
                                **{k: torch.as_tensor(v, dtype=torch.float32, device=dev)[None] for k, v in sm_ref.items()})
        if writer is not None:
            M_now = np.asarray(obs.transform, np.float64) if obs is not None else M_crop
            c_show = transfer_pose(c_sm_ref, crop_change(M_ref, M_now), cam)
            with torch.no_grad():
                st = syn.state(c_show, albedo=albedo)
                r = syn.render(st)
            from facegcn.frontend.align import Alignment

            rgba = torch.cat([r.image[0].cpu().clamp(0, 1), r.mask[0].cpu().float()], 0)
            back = warp_to_photo(rgba, Alignment(M_now, np.linalg.inv(_h(M_now))[:2]), (H, W))
            a = back[3:4].clamp(0, 1)
            base = torch.from_numpy(np.array(fr)).permute(2, 0, 1).float() / 255
            over = (back[:3] * a + base * (1 - a)).clamp(0, 1)
            right = (over.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            writer.write(np.concatenate([fr, right], axis=1))
        t3 = time.perf_counter()
        timings["render_s"] += t3 - t2
        if opts.mesh_format != "none":
            with torch.no_grad():
                verts = model.shape(c_sm_ref.id, c_sm_ref.exp)
                if opts.posed:
                    verts = rigid_transform(verts, c_sm_ref.angles, c_sm_ref.trans)
                normals = model.vertex_normals(verts)[0].cpu()
                verts = verts[0].cpu() * EXPORT_SCALE
            name = mesh_dir / f"frame_{i:06d}.{opts.mesh_format}"
            if opts.mesh_format == "ply":
                write_ply(name, verts, faces_np, vertex_colors=colors, normals=normals)
            else:
                write_obj(name, verts, faces_np, vertex_colors=colors)
            rec_row["mesh"] = str(name.relative_to(out))
        timings["write_s"] += time.perf_counter() - t3
        records.append(rec_row)

    import facegcn.render as _render

    saved_threads = (torch.get_num_threads(), _render.get_num_threads())
    if opts.threads:
        torch.set_num_threads(opts.threads)
        _render.set_num_threads(opts.threads)
    try:
        _, frames_it = read_video(video, max_side=opts.max_side)  # second pass: every frame, in order
        bar.set_postfix_str("tracking")
        try:
            for i, fr in selected(frames_it):
                process(i, fr)
                bar.update(1)
        finally:
            frames_it.close()
        files = {"keyframe": str(out / "keyframe"), **{f"keyframe_{k}": v for k, v in key_files.items()}}
        if writer is not None:
            p = writer.close()
            if p is not None:
                files["video"] = str(p)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
        if opts.threads:
            torch.set_num_threads(saved_threads[0])
            _render.set_num_threads(saved_threads[1])

    tracked = [r for r in records if r.get("raw")]

    def jit(kind: str) -> dict[str, float]:
        if not tracked:
            return {}
        return {k: jitter(np.array([r[kind][k] for r in tracked])) for k in ("angles", "trans", "exp")}

    j_raw, j_sm = jit("raw"), jit("smoothed")
    timings["total_s"] = time.perf_counter() - t_all
    if opts.mesh_format != "none":
        files["meshes"] = str(mesh_dir)
    doc = {
        "video": str(video), "fps": info.fps, "fps_out": fps_out, "size": [info.width, info.height],
        "options": asdict(opts), "config": json.loads(rec.cfg.to_json()),
        "reference_frame": first_key_frame, "reference_crop": M_ref.tolist(),
        "key_frames": sorted(key_of),
        "identity": id_shared[0].tolist(), "albedo_coefficients": tex_shared[0].tolist(),
        "units": "angles radians (x, y, z), R = Rz Ry Rx; trans decimetres; all in the reference frame's aligned crop camera",
        "frames": records,
    }
    atomic_write_text(out / "tracking.json", json.dumps(doc, indent=1, default=float))
    report = {
        "video": str(video), "frames": len(records),
        "frames_ok": sum(1 for r in records if r["status"] == "ok"),
        "frames_no_face": sum(1 for r in records if r["status"] == "no_face"),
        "video_frames_written": writer.frames if writer is not None else 0,
        "meshes_written": sum(1 for r in records if "mesh" in r),
        "smoothing": opts.smoothing, "jitter_raw": j_raw, "jitter_smoothed": j_sm,
        "mean_landmark_px": float(np.mean([r["landmark_px"] for r in tracked if r["landmark_px"] is not None] or [float("nan")])),
        "timings": timings, "files": files,
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=1, default=float))
    files["tracking"] = str(out / "tracking.json")
    files["report"] = str(out / "report.json")
    return VideoResult(out, info, records, files, j_raw, j_sm, timings)


__all__ = [
    "EMAFilter",
    "OneEuroFilter",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "VideoOptions",
    "VideoResult",
    "VideoWriter",
    "count_frames",
    "crop_change",
    "jitter",
    "probe_video",
    "read_video",
    "reconstruct_video",
    "track_frame",
    "transfer_pose",
]
