"""Trained GCN texture generators: build, save, load, and feed-forward refinement.

A ``texture.safetensors`` file holds the :class:`~facegcn.graph.TextureGenerator` weights and, in
its metadata, ``kind = "texture_generator"`` and ``config`` (the constructor options plus the
morphable model's name / vertex count and the mesh hierarchy digest it was built on). The output
parameterisation is the per-image refinement's: ``albedo = A_3dmm + generator(...)``.

Feed-forward use (one generator pass instead of the per-image optimisation)::

    gen = load_texture_generator("run/texture.safetensors", model)      # model = load_model("ict")
    albedo, render = feedforward_texture(gen, model, syn, observation, coarse_result)
"""

from __future__ import annotations

from pathlib import Path

import torch

from facegcn.errors import ModelFileError
from facegcn.graph import TextureGenerator
from facegcn.io.weights import load_module_state, save_module
from facegcn.refine.per_image import model_hierarchy, refiner_input
from facegcn.render import sh_shading

__all__ = [
    "IDENTITY_SCALE",
    "KIND",
    "build_texture_generator",
    "feedforward_texture",
    "generator_config",
    "generator_inputs",
    "identity_input",
    "load_texture_generator",
    "save_texture_generator",
]

KIND = "texture_generator"
IDENTITY_SCALE = 10.0  # dlib descriptors have norm ≈ 1; the generator sees them × 10


def generator_config(K: int = 6, fc_channels: int = 32, decoder_widths=(16, 16, 16, 3),
                     refiner_widths=(16, 32, 32, 16, 3)) -> dict:
    """The JSON constructor options of a texture generator (what its weight file records).

    Args:
        K: Chebyshev order of every graph convolution.
        fc_channels: channels per vertex of the decoder's fully connected layer (coarsest level).
        decoder_widths: output channels of the decoder's up-sampling blocks (last = 3, RGB).
        refiner_widths: output channels of the refiner's blocks (last = 3).

    Returns:
        ``{"K", "act", "identity_features", "refiner_channels", "decoder": {...}, "refiner": {...}}``
        (lists, not tuples, so it survives JSON unchanged).
    """
    return {"K": int(K), "act": "elu", "identity_features": 128, "refiner_channels": 7,
            "decoder": {"fc_channels": int(fc_channels), "widths": [int(w) for w in decoder_widths]},
            "refiner": {"widths": [int(w) for w in refiner_widths]}}


def build_texture_generator(model, config: dict | None = None, *, shrink_merger: bool = True) -> TextureGenerator:
    """A new generator on ``model``'s mesh hierarchy.

    Args:
        model: the :class:`~facegcn.morphable.MorphableModel` (its mean shape's hierarchy is used).
        config: :func:`generator_config` output (default: ``generator_config()``).
        shrink_merger: scale the merger's weights by 0.01 so the residual output starts near zero
            (the refined albedo starts at the 3DMM albedo, as in per-image refinement).

    Returns:
        The :class:`~facegcn.graph.TextureGenerator` (CPU, float32, train mode).
    """
    cfg = config or generator_config()
    g = TextureGenerator(model_hierarchy(model), identity_features=cfg["identity_features"],
                         refiner_channels=cfg["refiner_channels"], K=cfg["K"], act=cfg["act"],
                         decoder={k: tuple(v) if isinstance(v, list) else v for k, v in cfg["decoder"].items()},
                         refiner={k: tuple(v) if isinstance(v, list) else v for k, v in cfg["refiner"].items()})
    if shrink_merger:
        with torch.no_grad():
            for p in g.merger.parameters():
                p.mul_(0.01)
    return g


def _full_config(model, gen, config: dict) -> dict:
    return {**config, "model": model.name, "n_vertices": int(model.n_vertices),
            "hierarchy_digest": str(gen.ops.digest), "parameterization": "residual",
            "identity_scale": IDENTITY_SCALE}


def save_texture_generator(path: str | Path, gen: TextureGenerator, model, config: dict,
                           extra: dict | None = None) -> Path:
    """Write a generator as a ``kind = "texture_generator"`` safetensors file (atomic).

    Args:
        path: the file to write.
        gen: the generator.
        model: the morphable model it was built on (name, vertex count are recorded).
        config: its :func:`generator_config`.
        extra: more JSON metadata (e.g. ``{"trained": {...}}``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return save_module(path, gen, {"kind": KIND, "config": _full_config(model, gen, config), **(extra or {})})


def load_texture_generator(path: str | Path, model, map_location="cpu") -> TextureGenerator:
    """Load a ``texture.safetensors`` file.

    Args:
        path: the file written by :func:`save_texture_generator`.
        model: the :class:`~facegcn.morphable.MorphableModel` it was trained for (a generator is
            built from the saved config on that model's hierarchy), or an existing
            :class:`~facegcn.graph.TextureGenerator` whose weights are replaced.
        map_location: device of the returned generator.

    Returns:
        The generator in eval mode on ``map_location``.

    Raises:
        ModelFileError: missing / corrupt file, a file of another kind, or a model / hierarchy /
            weight-shape mismatch.
    """
    meta, state = load_module_state(path, expect_kind=KIND, map_location="cpu")
    cfg = meta.get("config") or {}
    if isinstance(model, TextureGenerator):
        gen = model
    else:
        if cfg.get("n_vertices") != int(model.n_vertices) or cfg.get("model") not in (None, model.name):
            raise ModelFileError(f"{path} was trained for model {cfg.get('model')!r} with {cfg.get('n_vertices')} "
                                 f"vertices, not {model.name!r} with {model.n_vertices}")
        gen = build_texture_generator(model, cfg, shrink_merger=False)
    digest = cfg.get("hierarchy_digest")
    if digest and str(gen.ops.digest) and digest != str(gen.ops.digest):
        raise ModelFileError(f"{path}: mesh hierarchy differs from the one it was trained on "
                             f"({digest[:12]} vs {str(gen.ops.digest)[:12]})")
    try:
        gen.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not fit the generator ({str(exc).splitlines()[0]})") from None
    return gen.to(map_location).eval()


def identity_input(identity: torch.Tensor) -> torch.Tensor:
    """Identity descriptors → the generator's identity input.

    Args:
        identity: dlib descriptors; rows with a non-finite entry mean "not available".

    Returns:
        Unit-norm rows × :data:`IDENTITY_SCALE` (rows without features become zeros).

    Shapes:
        identity: ``(B, 128)`` float, any device → ``(B, 128)``, same dtype and device.
    """
    ok = torch.isfinite(identity).all(-1, keepdim=True)
    x = torch.where(ok, identity, torch.zeros_like(identity))
    return torch.nn.functional.normalize(x, dim=-1) * IDENTITY_SCALE


def generator_inputs(syn, coeffs_flat: torch.Tensor, image: torch.Tensor):
    """Coarse state, its render and the refiner input for flat coefficients (no gradients).

    Args:
        syn: the :class:`~facegcn.coarse.synthesis.FaceSynthesis` of the model.
        coeffs_flat: flat coefficients in the model's layout.
        image: the aligned photos the refiner samples colours from.

    Returns:
        ``(coeffs, state, rendering, base, x_in)``: the split coefficients, the coarse
        :class:`FaceState`, its :class:`~facegcn.render.Rendering`, the clamped 3DMM albedo
        ``base`` and the refiner input ``x_in``.

    Shapes:
        coeffs_flat: ``(B, K)`` float; image: ``(B, 3, 224, 224)`` float in ``[0, 1]``;
        base: ``(B, V, 3)`` in ``[0, 1]``; x_in: ``(B, V, 7)`` (albedo | photo colour |
        visibility). All on the device of ``coeffs_flat``.
    """
    with torch.no_grad():
        c = syn.model.split(coeffs_flat)
        st = syn.state(c)
        r = syn.render(st)
        base = st.albedo.clamp(0, 1)
        x_in = refiner_input(base, image, st.verts_px, r.visibility.to(image.device))
    return c, st, r, base, x_in


def feedforward_texture(gen: TextureGenerator, model, syn, observation, coarse) -> tuple[torch.Tensor, torch.Tensor]:
    """Refine one face's albedo in one generator pass (no optimisation).

    Args:
        gen: a trained generator (moved to the coarse fit's device and set to eval mode).
        model: the morphable model (unused, kept for a uniform signature with the refiners).
        syn: the model's :class:`~facegcn.coarse.synthesis.FaceSynthesis`.
        observation: the :class:`~facegcn.frontend.Observation` (aligned image, identity).
        coarse: its coarse fit (a :class:`~facegcn.coarse.fit.CoarseResult`).

    Returns:
        ``(albedo, render)``: refined per-vertex albedo and its render with the coarse pose/light.

    Shapes:
        albedo: ``(V, 3)`` float in ``[0, 1]``; render: ``(3, 224, 224)`` float; both on the
        device of the coarse fit.
    """
    dev = coarse.state.vertices.device
    image = observation.image[None].to(dev)
    st = coarse.state
    base = st.albedo.detach().clamp(0, 1)
    x_in = refiner_input(base, image, st.verts_px.detach(), coarse.rendering.visibility.to(dev))
    ident = identity_input(observation.identity[None].to(dev).float())
    gen = gen.to(dev).eval()
    with torch.no_grad():
        alb = (base + gen(ident, x_in)).clamp(0, 1)
        r = syn.renderer(st.vertices.detach(), sh_shading(st.normals.detach(), alb, coarse.coeffs.sh))
    return alb[0], r.image[0]
