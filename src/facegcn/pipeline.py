"""The main job, stage by stage: photo → front-end → coarse coefficients → mesh → GCN texture.

:class:`Reconstructor` holds the loaded models (reuse it for many photos); :func:`write_outputs`
turns a :class:`Reconstruction` into files. The CLI, batch, video, evaluation and the web demo
all go through these two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facegcn.config import Config
from facegcn.errors import ConfigError


@dataclass
class Reconstruction:
    photo: object  # facegcn.io.image.Photo
    observation: object  # facegcn.frontend.FaceObservation
    coarse: object  # facegcn.coarse.fit.CoarseResult
    refined_albedo: torch.Tensor | None = None  # (V, 3) refined per-vertex colours (albedo)
    refined_render: torch.Tensor | None = None  # (3, 224, 224)
    refine_history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    face_index: int = 0

    @property
    def albedo(self) -> torch.Tensor:
        """Final per-vertex colours: refined when available, else the 3DMM albedo."""
        if self.refined_albedo is not None:
            return self.refined_albedo
        return self.coarse.state.albedo[0]


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB, peak 1) over a (1,H,W) / (H,W) mask, images (3,H,W) in [0,1]."""
    m = mask.reshape(1, *a.shape[-2:]).to(a.dtype)
    n = float(m.sum()) * 3
    if n == 0:
        return float("nan")
    mse = float((((a.clamp(0, 1) - b) ** 2) * m).sum()) / n
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def landmark_nme(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean landmark error normalised by the inter-ocular (outer eye corners) distance."""
    io = float(np.linalg.norm(target[36] - target[45]))
    return float(np.linalg.norm(pred - target, axis=1).mean() / max(io, 1e-6))


def identity_cosine(render: torch.Tensor, mask: torch.Tensor, photo: torch.Tensor, obs) -> float:
    """Cosine of the dlib-ResNet features of the render (composited over the photo) and the photo."""
    from facegcn.frontend.identity import embed_aligned, load_identity_net

    net = load_identity_net(device=render.device)
    comp = (render.clamp(0, 1) * mask + photo * (1 - mask))[None]
    with torch.no_grad():
        f = embed_aligned(comp, obs.chip_transform, net)[0]
    ref = obs.identity.to(f.device, f.dtype)
    return float(torch.nn.functional.cosine_similarity(f, ref, dim=0))


class Reconstructor:
    def __init__(self, config: Config | None = None):
        from facegcn.coarse.fit import CoarseFitter, FitConfig
        from facegcn.morphable import load_model

        self.cfg = (config or Config()).validate()
        c = self.cfg
        if c.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("--device cuda requested but CUDA is not available")
        if c.threads:
            from facegcn.render import set_num_threads

            torch.set_num_threads(c.threads)
            set_num_threads(c.threads)
        self.device = torch.device(c.device)
        self.model = load_model(c.model, device=self.device)
        fit_cfg = FitConfig.from_options(c.coarse, progress=c.progress)
        self.fitter = CoarseFitter(self.model, fit_cfg)
        self.regressor = None
        self.texture_generator = None
        if c.checkpoint:
            self._load_checkpoint(c.checkpoint)

    def _load_checkpoint(self, path: str) -> None:
        """A training run folder (regressor.safetensors [+ texture.safetensors]) or a regressor file
        (a texture.safetensors beside it is used too). Both stages then run feed-forward."""
        from facegcn.coarse.fit import CoarseFitter, FitConfig
        from facegcn.coarse.regressor import CoefficientRegressor
        from facegcn.errors import ModelFileError

        p = Path(path)
        reg_path = p / "regressor.safetensors" if p.is_dir() else p
        if not reg_path.is_file():
            raise ModelFileError(f"checkpoint not found: {reg_path}")
        self.regressor = CoefficientRegressor.load(reg_path, map_location=self.device).eval()
        if self.regressor.layout != self.model.layout:
            raise ConfigError(f"checkpoint {path} was trained for layout {self.regressor.layout.sizes}, "
                              f"but model {self.cfg.model!r} has {self.model.layout.sizes}")
        self.noop_fitter = CoarseFitter(self.model, FitConfig(0, 0, 0, 0), synthesis=self.fitter.syn)
        tex_path = reg_path.parent / "texture.safetensors"
        if tex_path.is_file():
            from facegcn.train.texture import load_texture_generator

            self.texture_generator = load_texture_generator(tex_path, self.model, map_location=self.device)

    # ------------------------------------------------------------------ stages
    def observe(self, source):
        from facegcn.frontend import observe
        from facegcn.io.image import Photo, load_image

        photo = source if isinstance(source, Photo) else load_image(source)
        obs = observe(photo, detector=self.cfg.frontend.detector, all_faces=self.cfg.frontend.all_faces)
        return photo, obs

    def fit_coarse(self, obs, init=None):
        dev = self.device
        img = obs.image[None].to(dev)
        lm = torch.as_tensor(obs.landmarks, dtype=torch.float32, device=dev)[None]
        fm = obs.face_mask.to(dev, torch.float32)[None, None]
        ident = obs.identity[None].to(dev) if torch.isfinite(obs.identity).all() else None
        if init is None and self.regressor is not None:  # feed-forward: the regressor's prediction
            with torch.no_grad():
                init = self.model.split(self.regressor(img))
            return self.noop_fitter.fit(img, lm, fm, identity=ident, chip_transform=obs.chip_transform, init=init)
        return self.fitter.fit(img, lm, fm, identity=ident, chip_transform=obs.chip_transform, init=init)

    def refine(self, obs, coarse):
        from facegcn.refine.per_image import RefineResult, refine_texture

        if self.texture_generator is not None:  # feed-forward with trained weights
            from facegcn.train.texture import feedforward_texture

            with torch.no_grad():
                alb, img = feedforward_texture(self.texture_generator, self.model, self.fitter.syn, obs, coarse)
            return RefineResult(alb, img)

        return refine_texture(self.model, self.fitter.syn, obs, coarse, self.cfg.refine, progress=self.cfg.progress)

    def __call__(self, source) -> list[Reconstruction]:
        torch.manual_seed(self.cfg.seed)
        t0 = time.perf_counter()
        photo, observations = self.observe(source)
        t_obs = time.perf_counter() - t0
        out = []
        for i, obs in enumerate(observations):
            t1 = time.perf_counter()
            coarse = self.fit_coarse(obs)
            t2 = time.perf_counter()
            rec = Reconstruction(photo, obs, coarse, face_index=i)
            rec.timings = {"frontend_s": t_obs, "coarse_s": t2 - t1, **{f"coarse_{k}_s": v for k, v in coarse.timings.items()}}
            if self.cfg.refine.enabled and self.cfg.refine.steps > 0:
                ref = self.refine(obs, coarse)
                rec.refined_albedo = ref.albedo
                rec.refined_render = ref.render
                rec.refine_history = ref.history
                rec.timings["refine_s"] = time.perf_counter() - t2
            rec.metrics = self.metrics(rec)
            rec.timings["total_s"] = time.perf_counter() - t0
            out.append(rec)
        return out

    def write(self, rec: Reconstruction, outdir: str | Path) -> dict[str, str]:
        """Write one face's files (see :func:`write_outputs`); returns {kind: path}."""
        return write_outputs(rec, outdir, self.cfg, syn=self.fitter.syn, model=self.model)

    def metrics(self, rec: Reconstruction) -> dict[str, float]:
        obs, co = rec.observation, rec.coarse
        r = co.rendering
        img = obs.image.to(r.image.device)
        mask = r.mask[0] * obs.face_mask.to(r.image.device, torch.float32)[None]
        lm_pred = co.state.landmarks[0].detach().cpu().numpy()
        m = {
            "landmark_nme": landmark_nme(lm_pred, obs.landmarks),
            "landmark_px": float(np.linalg.norm(lm_pred - obs.landmarks, axis=1).mean()),
            "psnr_coarse": masked_psnr(r.image[0], img, mask),
            "mask_pixels": float(mask.sum()),
        }
        if rec.refined_render is not None:
            m["psnr_refined"] = masked_psnr(rec.refined_render.to(img.device), img, mask)
        if torch.isfinite(obs.identity).all():
            m["identity_cos_coarse"] = identity_cosine(r.image[0], r.mask[0], img, obs)
            if rec.refined_render is not None:
                m["identity_cos_refined"] = identity_cosine(rec.refined_render.to(img.device), r.mask[0], img, obs)
        return m


# ---------------------------------------------------------------------- outputs
EXPORT_SCALE = 0.1  # model decimetres → metres in every exported mesh


def shaded_geometry(syn, state, size_hw=(224, 224)) -> torch.Tensor:
    """Grey clay rendering of the fitted geometry under a fixed light (3,H,W)."""
    from facegcn.render import sh_shading

    sh = torch.zeros(1, 27, device=state.vertices.device)
    for ch in range(3):
        sh[0, ch * 9 + 1] = 0.25
        sh[0, ch * 9 + 2] = 0.35
        sh[0, ch * 9 + 3] = -0.1
    grey = torch.full_like(state.albedo, 0.72)
    col = sh_shading(state.normals, grey, sh)
    r = syn.renderer(state.vertices, col, background=1.0)
    return r.image[0].clamp(0, 1)


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def _landmark_panel(image: torch.Tensor, detected: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(_to_uint8(image))
    d = ImageDraw.Draw(im)
    for (x, y) in detected:
        d.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(40, 220, 60))
    for (x, y) in fitted:
        d.ellipse([x - 1.2, y - 1.2, x + 1.2, y + 1.2], fill=(230, 40, 40))
    return np.asarray(im)


def write_outputs(rec: Reconstruction, outdir: str | Path, config: Config, syn=None, model=None) -> dict[str, str]:
    """Write meshes, coefficients, figures and the report for one face into ``outdir``."""
    import json

    from PIL import Image

    from facegcn.io.atomic import atomic_write_bytes, atomic_write_text
    from facegcn.io.mesh import write_glb, write_obj, write_ply

    from facegcn.errors import OutputError
    from facegcn.io.atomic import describe_write_error

    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(describe_write_error(exc, outdir)) from None
    co = rec.coarse
    if model is None or syn is None:
        raise ValueError("write_outputs needs the model and synthesis module (Reconstructor.model / .fitter.syn)")
    files: dict[str, str] = {}
    c = co.coeffs
    with torch.no_grad():
        verts = model.shape(c.id, c.exp)[0] * EXPORT_SCALE  # canonical pose, metres
        normals = model.vertex_normals(verts[None])[0]
    albedo = rec.albedo.detach().clamp(0, 1).cpu()
    fm = set(config.output.formats)
    texture = None
    if model.has_uv and ("obj" in fm or "glb" in fm):
        try:
            from facegcn.io.texture import bake_vertex_colors
        except ImportError:  # pragma: no cover - texture baking not available yet
            bake_vertex_colors = None
        baked = None if bake_vertex_colors is None else bake_vertex_colors(albedo.numpy(), model.faces.cpu().numpy(), model.uv.cpu().numpy(),
                                   model.faces_uv.cpu().numpy(), size=config.output.texture_size)
        texture = baked[0] if isinstance(baked, tuple) else baked
        if texture is None:
            pass
    kw_tex = dict(uv=model.uv, faces_uv=model.faces_uv, texture=texture) if texture is not None else {}
    if "obj" in fm:
        p = write_obj(outdir / "mesh.obj", verts, model.faces, vertex_colors=None if texture is not None else albedo, **kw_tex)
        files["obj"] = str(p)
    if "ply" in fm:
        files["ply"] = str(write_ply(outdir / "mesh.ply", verts, model.faces, vertex_colors=albedo, normals=normals))
    if "glb" in fm:
        files["glb"] = str(write_glb(outdir / "mesh.glb", verts, model.faces, vertex_colors=albedo if texture is None else None, **kw_tex))

    obs = rec.observation
    coeff_doc = {
        "model": model.name,
        "layout": model.layout.sizes,
        "units": "model coefficients; translation in decimetres; angles in radians (x, y, z), R = Rz Ry Rx",
        "camera": {"focal": syn.camera.fx, "center": list(syn.camera.center), "size": list(syn.camera.size),
                   "distance": syn.camera.distance},
        "aligned_to_photo": np.asarray(obs.transform_inv).tolist(),
        "coefficients": {k: v[0] for k, v in c.as_dict().items()},
        "landmarks_aligned": np.asarray(obs.landmarks).tolist(),
        "mesh_units": "metres (model decimetres × 0.1), canonical pose",
    }
    atomic_write_text(outdir / "coeffs.json", json.dumps(coeff_doc, indent=1))
    files["coeffs"] = str(outdir / "coeffs.json")

    if config.output.figures:
        img = obs.image
        r = co.rendering
        mask = r.mask[0].cpu()
        coarse_img = r.image[0].cpu().clamp(0, 1) * mask + img * (1 - mask)
        panels = [img, coarse_img]
        if rec.refined_render is not None:
            panels.append(rec.refined_render.cpu().clamp(0, 1) * mask + img * (1 - mask))
        panels.append(shaded_geometry(syn, co.state).cpu())
        row = [_to_uint8(p) for p in panels]
        row.append(_landmark_panel(img, obs.landmarks, co.state.landmarks[0].cpu().numpy()))
        fig = np.concatenate(row, axis=1)
        _save_png(outdir / "figure.png", fig)
        files["figure"] = str(outdir / "figure.png")
        # overlay on the original photo
        from facegcn.frontend import warp_to_photo

        final = rec.refined_render.cpu() if rec.refined_render is not None else r.image[0].cpu()
        H, W = rec.photo.pixels.shape[:2]
        rgba = torch.cat([final.clamp(0, 1), mask], 0)
        back = warp_to_photo(rgba, obs.alignment, (H, W))
        a = back[3:4].clamp(0, 1)
        base = torch.from_numpy(np.array(rec.photo.pixels)).permute(2, 0, 1).float() / 255
        over = back[:3] * a + base * (1 - a)
        _save_png(outdir / "overlay.png", _to_uint8(over))
        files["overlay"] = str(outdir / "overlay.png")
        from facegcn.frontend import save_label_png

        save_label_png(outdir / "mask.png", obs.labels.cpu().numpy(), _to_uint8(obs.image))
        files["mask"] = str(outdir / "mask.png")

    report = {
        "photo": rec.photo.name,
        "face_index": rec.face_index,
        "detector_score": obs.score,
        "metrics": rec.metrics,
        "timings": rec.timings,
        "coarse_history": co.history,
        "refine_history": rec.refine_history,
    }
    atomic_write_text(outdir / "report.json", json.dumps(report, indent=1, default=float))
    atomic_write_text(outdir / "config.json", config.to_json())
    files["report"] = str(outdir / "report.json")
    return files


def _save_png(path: Path, arr: np.ndarray) -> None:
    import io

    from PIL import Image

    from facegcn.io.atomic import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
