"""``TrainConfig``: every option of ``facegcn train`` (saved as ``RUN_DIR/config.json``).

Options that mean the same as a per-image pipeline option take their default from
:mod:`facegcn.config` (``model``, ``seed``, ``progress``, the coarse identity weight). The
texture-stage loss weights equal the :class:`~facegcn.refine.losses.RefineWeights` defaults.
Options with the same name but a training-specific default: ``device`` (``"auto"``: CUDA when
available; the pipeline defaults to the CPU), ``threads`` (0 = torch's default; the pipeline uses
1) and ``lr`` (Adam on a dataset, not the per-image optimisation).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from facegcn.config import CoarseOptions, Config, JsonConfig
from facegcn.errors import ConfigError

__all__ = ["RUNTIME_FIELDS", "STAGES", "TrainConfig"]

STAGES = ("coarse", "texture", "both")

# Options that may change between a run and its --resume (they do not change the computation).
RUNTIME_FIELDS = frozenset({
    "cache", "run_dir", "epochs", "coarse_epochs", "texture_epochs", "max_steps", "log_every",
    "checkpoint_every", "image_every", "workers", "progress", "eval", "eval_batches", "threads",
    "regressor", "stage", "device", "amp",
})


@dataclass
class TrainConfig(JsonConfig):
    """The options of a training run (one JSON object; :meth:`differences` decides resumability)."""

    _what = "training config"  # not a field (no annotation): how load() errors name the file

    cache: str = ""
    run_dir: str = ""
    stage: str = "both"
    # schedule
    epochs: int = 20
    coarse_epochs: int | None = None  # default: epochs
    texture_epochs: int | None = None  # default: epochs
    batch_size: int = 4  # per process (global batch = batch_size × world size)
    lr: float = 1e-4
    lr_decay: float = 0.98  # ExponentialLR gamma, stepped once per epoch
    grad_clip: float = 5.0
    seed: int = Config.seed
    flip: bool = False
    # coarse regressor
    model: str = Config.model
    depth: int = 50
    width: int = 64
    coarse_identity_weight: float = CoarseOptions.identity_weight
    sync_bn: bool = True
    # texture stage
    regressor: str | None = None  # frozen stage-1 regressor (default RUN_DIR/regressor.safetensors)
    critic_steps: int = 5
    gp_lambda: float = 10.0
    adv_weight: float = 1e-3
    # the loss weights equal RefineWeights' defaults (not imported: this module stays torch-free)
    pixel_weight: float = 20.0
    identity_weight: float = 0.2
    vertex_weight: float = 0.05
    symmetry_weight: float = 0.05
    skin_variance_weight: float = 0.05
    critic_widths: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    critic_norm: str = "layer"  # "layer" (GroupNorm(1, C)) or "none"
    gen_K: int = 6
    gen_fc_channels: int = 32
    gen_decoder_widths: tuple[int, ...] = (16, 16, 16, 3)
    gen_refiner_widths: tuple[int, ...] = (16, 32, 32, 16, 3)
    # runtime
    device: str = "auto"  # auto | cpu | cuda (training default; the pipeline's is "cpu")
    amp: bool | None = None  # None: on for CUDA, off on CPU (AMP is never used on CPU)
    threads: int = 0  # 0 = torch's default (the pipeline's default is 1)
    workers: int = 0
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps in this invocation
    log_every: int = 10
    checkpoint_every: int = 200  # steps; a checkpoint is also written at each epoch end
    image_every: int = 1  # epochs between image grids (0 = never)
    eval: bool = True  # held-out losses at each epoch end
    eval_batches: int = 25
    progress: bool = Config.progress

    def stage_epochs(self, stage: str) -> int:
        """Epochs of ``"coarse"`` or ``"texture"`` (its own option, else ``epochs``)."""
        v = self.coarse_epochs if stage == "coarse" else self.texture_epochs
        return int(self.epochs if v is None else v)

    def stages(self) -> list[str]:
        """The stages this run trains, in order."""
        return ["coarse", "texture"] if self.stage == "both" else [self.stage]

    def validate(self) -> "TrainConfig":
        """``self`` when the options are consistent.

        Raises:
            ConfigError: unknown stage, or an out-of-range option.
        """
        if self.stage not in STAGES:
            raise ConfigError(f"unknown stage {self.stage!r} (choose coarse, texture or both)")
        if self.batch_size < 1:
            raise ConfigError("batch size must be at least 1")
        if self.epochs < 0 or any((v or 0) < 0 for v in (self.coarse_epochs, self.texture_epochs)):
            raise ConfigError("epochs must be >= 0")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise ConfigError("lr must be > 0 and lr decay in (0, 1]")
        if self.critic_steps < 0:
            raise ConfigError("critic steps must be >= 0")
        if self.depth not in (14, 26, 50):
            raise ConfigError(f"unsupported regressor depth {self.depth}: choose 50 (paper), 26 or 14")
        if self.max_steps is not None and self.max_steps < 0:
            raise ConfigError("max steps must be >= 0")
        return self

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict` (lists become tuples).

        Raises:
            ConfigError: unknown option names.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        bad = set(d) - names
        if bad:
            raise ConfigError(f"unknown training option(s) {sorted(bad)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def differences(self, other: "TrainConfig") -> list[str]:
        """Options that change the computation and differ between the two configs."""
        a, b = self.to_dict(), other.to_dict()
        return sorted(k for k in a if k not in RUNTIME_FIELDS and a[k] != b[k])
