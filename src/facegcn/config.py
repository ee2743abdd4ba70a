"""One typed configuration tree with defaults. CLI flags map onto it; it is saved next to outputs
as ``config.json``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facegcn.errors import ConfigError


@dataclass
class FrontendOptions:
    detector: str = "dlib"  # "dlib" (HOG + 68 landmarks) or "mtcnn" (5 points, then dlib's 68)
    all_faces: bool = False


@dataclass
class CoarseOptions:
    steps_rigid: int = 60
    steps_landmark: int = 120
    steps_photo: int = 200
    steps_identity: int = 30
    lr: float = 0.08
    contour_weight: float = 0.3
    identity_weight: float = 0.2
    photo_weight: float = 1.92
    landmark_weight: float = 1.6e-3


@dataclass
class RefineOptions:
    enabled: bool = True
    steps: int = 120
    lr: float = 5e-3
    identity_every: int = 4


@dataclass
class OutputOptions:
    formats: tuple[str, ...] = ("obj", "ply", "glb")
    texture_size: int = 1024
    figures: bool = True


@dataclass
class Config:
    model: str = "ict"
    device: str = "cpu"
    seed: int = 0
    # CPU threads for torch and the rasterizer. 1 by default: the per-image tensors are small, and on a
    # shared 2-core machine 2 OpenMP threads measured 40x slower (490 s vs 12.8 s for the demo).
    threads: int = 1  # 0 = torch's default
    checkpoint: str | None = None
    progress: bool = True
    frontend: FrontendOptions = field(default_factory=FrontendOptions)
    coarse: CoarseOptions = field(default_factory=CoarseOptions)
    refine: RefineOptions = field(default_factory=RefineOptions)
    output: OutputOptions = field(default_factory=OutputOptions)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        return _build(cls, d, "config")

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None

    def validate(self) -> "Config":
        if self.frontend.detector not in ("dlib", "mtcnn"):
            raise ConfigError(f"unknown detector {self.frontend.detector!r} (choose dlib or mtcnn)")
        bad = set(self.output.formats) - {"obj", "ply", "glb"}
        if bad or not self.output.formats:
            raise ConfigError(f"unknown output format(s) {sorted(bad)}; choose from obj, ply, glb")
        if not 16 <= self.output.texture_size <= 8192:
            raise ConfigError("texture size must be between 16 and 8192")
        for name in ("steps_rigid", "steps_landmark", "steps_photo", "steps_identity"):
            if getattr(self.coarse, name) < 0:
                raise ConfigError(f"coarse.{name} must be >= 0")
        if self.refine.steps < 0:
            raise ConfigError("refine.steps must be >= 0")
        return self


def _build(cls, d: dict[str, Any], where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected an object")
    kwargs = {}
    names = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in d.items():
        if k not in names:
            raise ConfigError(f"{where}: unknown option {k!r}")
        f = names[k]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        if sub is not None and dataclasses.is_dataclass(sub):
            kwargs[k] = _build(sub, v, f"{where}.{k}")
        elif isinstance(v, list):
            kwargs[k] = tuple(v)
        else:
            kwargs[k] = v
    return cls(**kwargs)
