"""The composer: photo → front-end → coarse coefficients → mesh → GCN texture, one face at a time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facegcn.coarse.dense import yaw_ramp
from facegcn.coarse.fit import CoarseFitter, CoarseResult, FitConfig
from facegcn.coarse.regressor import CoefficientRegressor
from facegcn.coarse.synthesis import FaceSynthesis
from facegcn.config import Config, OutputOptions
from facegcn.errors import ConfigError, ModelFileError
from facegcn.evaluate.metrics import descriptor_cosine, landmark_nme, masked_psnr
from facegcn.frontend import FaceObservation, observe
from facegcn.frontend.identity import IdentityEncoder
from facegcn.io.image import Photo, load_image
from facegcn.io.imageops import composite
from facegcn.morphable import MorphableModel, load_model
from facegcn.pipeline.export import write_outputs
from facegcn.pipeline.runtime import apply_runtime
from facegcn.refine.per_image import RefineResult, refine_texture
from facegcn.refine.texture_map import UVTexture, compose_texture
from facegcn.refine.generator import feedforward_texture, load_texture_generator

__all__ = ["Reconstruction", "Reconstructor"]


@dataclass(eq=False)
class Reconstruction:
    """One reconstructed face: every stage's result plus what is needed to export it.

    Attributes:
        photo: the input :class:`~facegcn.io.image.Photo`.
        observation: the front-end's :class:`~facegcn.frontend.FaceObservation` of this face.
        coarse: the coarse fit (:class:`~facegcn.coarse.CoarseResult`: coefficients, posed state,
            rendering in the 224² aligned frame).
        refined_albedo: ``(V, 3)`` float in [0, 1], the GCN-refined per-vertex albedo, or None.
        refined_render: ``(3, 224, 224)`` float, the render with the refined albedo, or None.
        refine_history: the refinement's loss log (one dict per logged step).
        texture: the composed UV texture (:class:`~facegcn.refine.texture_map.UVTexture`), or None
            for models without UVs.
        timings: seconds per stage (``frontend_s``, ``coarse_s``, ``refine_s``, ``total_s``...).
        metrics: fit quality (see :meth:`Reconstructor.metrics`).
        face_index: the face's index among the photo's faces (0 = the best one).
        model, synthesis, config: what :meth:`save` needs to write the files.
    """

    photo: Photo
    observation: FaceObservation
    coarse: CoarseResult
    model: MorphableModel
    synthesis: FaceSynthesis
    config: Config
    refined_albedo: torch.Tensor | None = None
    refined_render: torch.Tensor | None = None
    refine_history: list[dict] = field(default_factory=list)
    texture: UVTexture | None = None
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    face_index: int = 0

    @property
    def albedo(self) -> torch.Tensor:
        """``(V, 3)`` final per-vertex albedo: the refined one when available, else the 3DMM's."""
        if self.refined_albedo is not None:
            return self.refined_albedo
        return self.coarse.state.albedo[0]

    @property
    def final_render(self) -> torch.Tensor:
        """``(3, 224, 224)`` the final render in the aligned frame (refined, else coarse)."""
        return self.refined_render if self.refined_render is not None else self.coarse.rendering.image[0]

    def save(self, outdir: str | Path, config: Config | None = None) -> dict[str, str]:
        """Write this face's files into ``outdir`` (see :func:`facegcn.pipeline.export.write_outputs`),
        with the output options of ``config`` (default: the config it was made with).

        Returns:
            ``{kind: path}`` of the files written (``obj``, ``glb``, ``coeffs``, ``report``...).
        """
        return write_outputs(self, outdir, config)


class Reconstructor:
    """Holds the loaded models; call it on photos (reuse one instance for many).

    Args:
        config: the configuration tree (default: :class:`~facegcn.config.Config` defaults).

    Example::

        from facegcn import Reconstructor
        faces = Reconstructor()("photo.jpg")
        faces[0].save("out/")
    """

    def __init__(self, config: Config | None = None):
        self.cfg = (config or Config()).validate()
        self.device = apply_runtime(self.cfg)
        self.model = load_model(self.cfg.model, device=self.device)
        self.identity = IdentityEncoder(device=self.device)
        self.fitter = CoarseFitter(self.model, FitConfig.from_options(self.cfg.coarse, progress=self.cfg.progress),
                                   identity=self.identity)
        self.synthesis = self.fitter.syn
        self.regressor: CoefficientRegressor | None = None
        self.texture_generator = None
        if self.cfg.checkpoint:
            self._load_checkpoint(self.cfg.checkpoint)

    def _load_checkpoint(self, path: str) -> None:
        """A training run folder (regressor.safetensors [+ texture.safetensors]) or a regressor file
        (a texture.safetensors beside it is used too). Both stages then run feed-forward."""
        p = Path(path)
        reg_path = p / "regressor.safetensors" if p.is_dir() else p
        if not reg_path.is_file():
            raise ModelFileError(f"checkpoint not found: {reg_path}")
        self.regressor = CoefficientRegressor.load(reg_path, map_location=self.device).to(self.device).eval()
        if self.regressor.layout != self.model.layout:
            raise ConfigError(f"checkpoint {path} was trained for layout {self.regressor.layout.sizes}, "
                              f"but model {self.cfg.model!r} has {self.model.layout.sizes}")
        self.noop_fitter = CoarseFitter(self.model, FitConfig(0, 0, 0, 0), synthesis=self.synthesis)
        tex_path = reg_path.parent / "texture.safetensors"
        if tex_path.is_file():
            self.texture_generator = load_texture_generator(tex_path, self.model, map_location=self.device)

    # ------------------------------------------------------------------ stages
    def observe(self, source: str | Path | Photo) -> tuple[Photo, list[FaceObservation]]:
        """Load a photo (path or :class:`Photo`) and run the front-end: one observation per face."""
        photo = source if isinstance(source, Photo) else load_image(source)
        obs = observe(photo, detector=self.cfg.frontend.detector, all_faces=self.cfg.frontend.all_faces)
        return photo, obs

    def fit_coarse(self, obs: FaceObservation, init=None) -> CoarseResult:
        """Coarse coefficients of one face: the regressor's prediction with a checkpoint, else the
        per-image fit (from ``init`` coefficients when given, e.g. the previous video frame)."""
        dev = self.device
        img = obs.image[None].to(dev)
        lm = torch.as_tensor(obs.landmarks, dtype=torch.float32, device=dev)[None]
        fm = obs.face_mask.to(dev, torch.float32)[None, None]
        ident = obs.identity[None].to(dev) if torch.isfinite(obs.identity).all() else None
        fitter = self.fitter
        if init is None and self.regressor is not None:  # feed-forward: the regressor's prediction
            with torch.no_grad():
                init = self.model.split(self.regressor(img))
            fitter = self.noop_fitter
        dense = dw = None
        if obs.dense is not None:
            dense = torch.as_tensor(obs.dense, dtype=torch.float32, device=dev)[None]
            score = float(obs.dense_score if obs.dense_score is not None else 1.0)
            dw = torch.full((1, 1), score * yaw_ramp(obs.yaw_deg, self.cfg.coarse.dense_yaw), device=dev)
        return fitter.fit(img, lm, fm, identity=ident, chip_transform=obs.chip_transform, init=init,
                          dense=dense, dense_weight=dw)

    def refine(self, obs: FaceObservation, coarse: CoarseResult) -> RefineResult:
        """The GCN texture: trained feed-forward generator when loaded, else per-image refinement."""
        if self.texture_generator is not None:
            with torch.no_grad():
                alb, img = feedforward_texture(self.texture_generator, self.model, self.synthesis, obs, coarse)
            return RefineResult(alb, img)
        return refine_texture(self.model, self.synthesis, obs, coarse, self.cfg.refine, progress=self.cfg.progress)

    def texture(self, rec: Reconstruction, output: OutputOptions | None = None) -> UVTexture | None:
        """The face's UV texture (size and mode from ``output``, default this config's), or None
        when the model has no UVs."""
        output = output or self.cfg.output
        if not self.model.has_uv:
            return None
        return compose_texture(self.model, self.synthesis, rec.observation, rec.coarse, rec.photo.pixels, rec.albedo,
                               output.texture_size, output.texture, photo_filter=output.photo_filter,
                               delight=output.delight)

    def reconstruct(self, obs: FaceObservation, photo: Photo, *, face_index: int = 0, init=None) -> Reconstruction:
        """Every stage after the front-end for one observed face: coarse fit, GCN texture, metrics.

        Args:
            obs: one face of ``photo`` (from :meth:`observe`).
            photo: the photo it was observed in (kept for the overlay figure and the report).
            face_index: the face's index among the photo's faces.
            init: optional starting coefficients for the coarse fit.

        The global torch RNG is seeded from ``config.seed`` first, so a face's result does not
        depend on what ran before it in the process (the GCN's initial weights are random).
        """
        torch.manual_seed(self.cfg.seed)
        t1 = time.perf_counter()
        coarse = self.fit_coarse(obs, init=init)
        t2 = time.perf_counter()
        rec = Reconstruction(photo, obs, coarse, self.model, self.synthesis, self.cfg, face_index=face_index)
        rec.timings = {"coarse_s": t2 - t1, **{f"coarse_{k}_s": v for k, v in coarse.timings.items()}}
        if self.cfg.refine.enabled and self.cfg.refine.steps > 0:
            ref = self.refine(obs, coarse)
            rec.refined_albedo, rec.refined_render, rec.refine_history = ref.albedo, ref.render, ref.history
            rec.timings["refine_s"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        rec.texture = self.texture(rec)
        if rec.texture is not None:
            rec.timings["texture_s"] = time.perf_counter() - t3
        rec.metrics = self.metrics(rec)
        return rec

    def __call__(self, source: str | Path | Photo) -> list[Reconstruction]:
        """Reconstruct the face(s) of one photo (the best one, or all with ``frontend.all_faces``)."""
        t0 = time.perf_counter()
        photo, observations = self.observe(source)
        t_obs = time.perf_counter() - t0
        out = []
        for i, obs in enumerate(observations):
            rec = self.reconstruct(obs, photo, face_index=i)
            rec.timings = {"frontend_s": t_obs, **rec.timings, "total_s": time.perf_counter() - t0}
            out.append(rec)
        return out

    def write(self, rec: Reconstruction, outdir: str | Path) -> dict[str, str]:
        """Write one face's files with this reconstructor's output options; returns ``{kind: path}``."""
        return rec.save(outdir, self.cfg)

    def metrics(self, rec: Reconstruction) -> dict[str, float]:
        """Fit quality of one face in the aligned frame (evaluation mask = render ∩ face mask).

        Returns:
            ``landmark_nme`` (inter-ocular), ``landmark_px``, ``psnr_coarse`` / ``psnr_refined``
            (dB), ``mask_pixels``, and ``identity_cos_photo_coarse`` / ``..._refined``: the cosine
            between the render composited over the aligned photo and the photo's own dlib
            descriptor (computed from the original photo's chip); ``texture_photo_share``: the
            share of the face texture taken from the photo (0 = all from the model).
        """
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
        if rec.texture is not None:
            m["texture_photo_share"] = rec.texture.photo_share
        if torch.isfinite(obs.identity).all():
            renders = {"coarse": r.image[0], "refined": rec.refined_render}
            for name, render in renders.items():
                if render is not None:
                    comp = composite(render.to(img.device), r.mask[0], img)
                    m[f"identity_cos_photo_{name}"] = descriptor_cosine(comp, obs.identity, obs.chip_transform,
                                                                        self.identity)
        return m
