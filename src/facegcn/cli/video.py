"""`facegcn video`: a clip → smoothed per-frame meshes, a side-by-side video, tracking.json.

Thin: options → :class:`facegcn.apps.video.VideoOptions` → :func:`facegcn.apps.video.reconstruct_video`.
Register on a typer app with :func:`register`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.cli import options as opts


@opts.pipeline_options("config_file", "model", "detector", "checkpoint", "refine", "texture_size", "device", "fast",
                       "quiet", help={
                           "refine": "GCN texture refinement of the key frame (its albedo colours every frame).",
                           "texture_size": "UV texture size of the key frame's textured mesh.",
                           "fast": "Fewer optimisation steps for the key frame(s).",
                           "quiet": "No progress bar."})
def video(
    source: Path = typer.Argument(..., help="Video file (.mp4, .mov, .avi, .mkv, .webm, ...; anything ffmpeg reads)."),
    out: Path = typer.Option(Path("out/video"), "-o", "--out", help="Output folder."),
    max_frames: int = typer.Option(None, "--max-frames", min=1, help="Stop after this many processed frames."),
    stride: int = typer.Option(1, "--stride", min=1, help="Process every N-th frame."),
    key_frames: int = typer.Option(1, "--key-frames", min=1, help="Frames fitted fully for the shared identity (averaged)."),
    track_steps: int = typer.Option(40, "--track-steps", min=0, help="Landmark steps per frame (pose + expression)."),
    photo_steps: int = typer.Option(4, "--photo-steps", min=0, help="Photometric steps per frame (pose + expression + light)."),
    smoothing: str = typer.Option("one-euro", "--smoothing", help="Temporal filter: one-euro, ema or none."),
    min_cutoff: float = typer.Option(1.0, "--min-cutoff", help="One Euro filter: cut-off at rest (Hz); lower = smoother."),
    beta: float = typer.Option(1.0, "--beta", help="One Euro filter: speed coefficient; higher = less lag."),
    ema_alpha: float = typer.Option(0.4, "--ema-alpha", help="EMA weight of the newest frame (with --smoothing ema)."),
    mesh_format: str = typer.Option("ply", "--mesh-format", help="Per-frame meshes: ply, obj or none."),
    posed: bool = typer.Option(True, "--posed/--canonical", help="Meshes posed in the camera frame, or in the canonical pose."),
    side_by_side: bool = typer.Option(True, "--side-by-side/--no-side-by-side", help="Write side_by_side.mp4 (photo | render)."),
    fps: float = typer.Option(None, "--fps", help="Output frame rate (default: input rate / stride)."),
    max_side: int = typer.Option(1280, "--max-side", min=0, help="Downscale frames whose longer side exceeds this (0 = never)."),
    *,
    pipeline: opts.PipelineOptions,
) -> None:
    """Reconstruct a face video: shared identity, tracked and smoothed pose/expression, mesh sequence."""
    # deferred: importing the pipeline loads torch, which `facegcn --help` should not wait for
    from facegcn.apps.video import VideoOptions, probe_video, reconstruct_video
    from facegcn.cli.configure import check_cache
    from facegcn.io.atomic import check_writable_folder
    from facegcn.coarse.track import TrackConfig
    from facegcn.pipeline import Reconstructor

    vopts = VideoOptions(key_frames=key_frames, track=TrackConfig(track_steps=track_steps, photo_steps=photo_steps),
                         smoothing=smoothing.lower(), min_cutoff=min_cutoff, beta=beta, ema_alpha=ema_alpha,
                         max_frames=max_frames, stride=stride, max_side=max_side, mesh_format=mesh_format.lower(),
                         posed=posed, side_by_side=side_by_side, fps=fps).validate()
    cfg = pipeline.config()
    check_writable_folder(out)
    probe_video(source)  # a bad file fails here, before the models load (one-line InputError)
    check_cache()
    rec = Reconstructor(cfg)
    res = reconstruct_video(rec, source, out, vopts, progress=cfg.progress)
    ok = sum(1 for f in res.frames if f["status"] == "ok")
    jr, js = res.jitter_raw, res.jitter_smoothed
    jit = ""
    if jr:
        jit = (f"; pose jitter raw/smoothed: angles {jr['angles']:.4f}/{js['angles']:.4f} rad, "
               f"trans {jr['trans']:.4f}/{js['trans']:.4f} dm")
    typer.echo(f"{source} → {out}: {res.n_frames} frame(s), {ok} with a face, {res.timings['total_s']:.1f} s{jit}")
    if "video" in res.files:
        typer.echo(f"side-by-side video: {res.files['video']}")


def register(app: typer.Typer) -> None:
    """Add the ``video`` command to ``app`` (idempotent)."""
    opts.register_command(app, video, "video")
