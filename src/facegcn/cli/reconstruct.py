"""`facegcn reconstruct`: photos → ``OUT/<photo>/`` each: textured meshes, coefficients, figures,
report and the run's config.

One layout whatever the number of photos or faces: ``OUT/<name>/`` per photo, where ``<name>`` is
the photo's stem (``<stem>-<8 hex digits>`` when two photos share a stem, as in ``facegcn
batch``); with ``--all-faces`` every face found goes to ``OUT/<name>/face_<i>/`` (``face_0`` is
the most confident), even when only one is found.
"""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.cli import options as opts
from facegcn.config import Config
from facegcn.errors import FaceGCNError, PartialFailure

LOW_PHOTO_SHARE = 0.1  # below this share of photo texels the texture is mostly the model's: say so
PIPELINE = ("config_file", "model", "detector", "all_faces", "checkpoint", "refine", "fmt", "texture_size",
            "texture", "delight", "device", "threads", "fast", "quiet")


def build_config(
    model: str = "ict",
    detector: str = "cascade",
    all_faces: bool = False,
    checkpoint: str | None = None,
    refine: bool = True,
    formats: str = "obj,ply,glb",
    texture_size: int = 1024,
    device: str = "cpu",
    quiet: bool = False,
    fast: bool = False,
    threads: int = 1,
    texture: str = "albedo",
    delight: float | None = None,
) -> Config:
    """The :class:`Config` that the pipeline commands' flags describe (``fast`` = the ``"fast"`` preset)."""
    cfg = Config.preset("fast" if fast else "default")
    cfg.model, cfg.device, cfg.checkpoint, cfg.progress, cfg.threads = model, device, checkpoint, not quiet, threads
    cfg.frontend.detector = detector
    cfg.frontend.all_faces = all_faces
    cfg.refine.enabled = refine
    cfg.output.formats = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
    cfg.output.texture_size = texture_size
    cfg.output.texture = texture
    if delight is not None:
        cfg.output.delight = delight
    return cfg.validate()


def face_folder(out: Path, name: str, face_index: int, all_faces: bool) -> Path:
    """Where one face of a photo goes: ``OUT/<name>/``, or ``OUT/<name>/face_<i>/`` with ``all_faces``."""
    return out / name / f"face_{face_index}" if all_faces else out / name


def _unique(photos: list[Path]) -> list[Path]:
    """The photos in order, each file once (``a.jpg ./a.jpg`` is one photo)."""
    seen, keep = set(), []
    for p in photos:
        try:
            key = str(Path(p).resolve())
        except (OSError, RuntimeError, ValueError):
            key = str(p)
        if key not in seen:
            seen.add(key)
            keep.append(Path(p))
    return keep


def _finish(n: int, failures: list[tuple[Path, FaceGCNError]]) -> None:
    """Nothing when every photo worked; else the exit-code contract of ``facegcn batch``: the
    error itself for one photo, exit 7 when some failed, the first error's code when all did."""
    if not failures:
        return
    first = failures[0][1]
    if n == 1:
        raise first
    if len(failures) < n:
        raise PartialFailure(f"{len(failures)} of {n} photo(s) failed (first: {first})")
    exc = type(first)(f"all {n} photo(s) failed (first: {first})")
    exc.exit_code = first.exit_code
    raise exc


def run(photos: list[Path], out: Path, cfg: Config) -> list[Path]:
    """Reconstruct ``photos`` into ``out`` (see the module doc for the layout) and print one line
    per face. Every photo is tried: one that cannot be read or holds no face is reported in one
    line (on stderr) and the others are done; then the outcome raises as ``facegcn batch``'s does
    (:class:`~facegcn.errors.PartialFailure`, exit 7, when some failed).

    The destination is checked before any work, the photos are checked before the models load,
    and each face's files are written as a set (never a partial set).

    Returns:
        The folders written, one per face.
    """
    # imported here, not at the top: they load numpy/torch (seconds), which `facegcn --help` must not wait for
    from facegcn.apps.batch.inputs import output_names
    from facegcn.io.atomic import check_writable_folder
    from facegcn.io.image import load_image
    from facegcn.pipeline import Reconstructor
    from facegcn.pipeline.runtime import freeze_heap

    out = Path(out)
    photos = _unique([Path(p) for p in photos])
    names = output_names(photos)
    check_writable_folder(out)
    for name in names:
        check_writable_folder(out / name)
    several = len(photos) > 1
    failures: list[tuple[Path, FaceGCNError]] = []

    def failed(photo: Path, exc: FaceGCNError) -> None:
        failures.append((photo, exc))
        if several:  # one photo: its error is the command's one line
            typer.echo(f"error: {exc}", err=True)

    todo = []
    for photo, name in zip(photos, names):  # unreadable photos fail here, before any model loads
        try:
            load_image(photo)
            todo.append((photo, name))
        except FaceGCNError as exc:
            failed(photo, exc)
    written: list[Path] = []
    if todo:
        rec = Reconstructor(cfg)
        freeze_heap()  # modules and models are loaded: out of the collector's reach
        for photo, name in todo:
            try:
                for r in rec(photo):
                    d = face_folder(out, name, r.face_index, cfg.frontend.all_faces)
                    rec.write(r, d)
                    written.append(d)
                    _report(photo, d, r)
            except FaceGCNError as exc:
                failed(photo, exc)
    _finish(len(photos), failures)
    return written


def _report(photo: Path, d: Path, r) -> None:
    m = r.metrics
    extra = f", refined PSNR {m['psnr_refined']:.2f} dB" if "psnr_refined" in m else ""
    typer.echo(f"{photo} → {d}: landmark NME {m['landmark_nme']:.4f}, coarse PSNR {m['psnr_coarse']:.2f} dB"
               f"{extra}, {r.timings['total_s']:.1f} s")
    from facegcn.pipeline.export import fit_warnings

    for w in fit_warnings(r):
        typer.echo(f"warning: {photo}: {w}", err=True)
    share = m.get("texture_photo_share")
    if share is not None and share < LOW_PHOTO_SHARE:
        typer.echo(f"warning: {photo}: only {share:.0%} of the face texture comes from the photo "
                   "(face occluded or outside the frame?); the rest is the model's albedo", err=True)


@opts.pipeline_options(*PIPELINE)
def reconstruct(
    photos: list[Path] = typer.Argument(..., help="Photo file(s)."),
    out: Path = typer.Option(Path("out"), "-o", "--out", help="Output folder: OUT/<photo>/ per photo "
                             "(OUT/<photo>/face_<i>/ per face with --all-faces)."),
    *,
    pipeline: opts.PipelineOptions,
) -> None:
    """Reconstruct 3D faces from photos: meshes, coeffs.json, figures and a report per face."""
    from facegcn.cli.configure import check_cache

    cfg = pipeline.config()
    check_cache()
    run(photos, out, cfg)


def register(app: typer.Typer) -> None:
    """Add the ``reconstruct`` command to a typer application."""
    opts.register_command(app, reconstruct, "reconstruct")
