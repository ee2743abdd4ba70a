"""One typed configuration tree with defaults and named presets.

:class:`Config` is the only place that declares a user-facing default; CLI flags map onto it,
``Config.preset("fast")`` starts from a named preset, and it is saved next to outputs as
``config.json`` (and read back with :meth:`Config.load`). Stages take their section
(``cfg.coarse``, ``cfg.refine``...) rather than re-declaring defaults.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facegcn.errors import ConfigError

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")  # the devices this project runs on


class JsonConfig:
    """JSON round trip shared by the configuration dataclasses (:class:`Config`, ``TrainConfig``):
    ``to_dict`` / ``to_json`` (indented, sorted keys) / ``load``; subclasses define ``from_dict``."""

    _what = "config"  # how error messages name the file

    def to_dict(self) -> dict[str, Any]:
        """Every option (tuples stay tuples; :meth:`to_json` writes them as lists)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        """Indented JSON with sorted keys (the ``config.json`` written beside outputs)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | Path):
        """Read a ``config.json``; :class:`~facegcn.errors.ConfigError` when unreadable or invalid."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {cls._what} {path}: {exc}") from None


@dataclass
class FrontendOptions:
    # "cascade" (dlib's HOG, BlazeFace for the faces it misses, MTCNN when nothing was found; every
    # candidate verified by O-Net), "dlib" (HOG only) or "mtcnn"; dlib's 68 landmarks in each case
    detector: str = "cascade"
    all_faces: bool = False


@dataclass
class CoarseOptions:
    steps_rigid: int = 60
    steps_landmark: int = 120
    # 150 / 4 (before: 200 / 2): the same NME and PSNR within the spread of 5 perturbed runs of the
    # demo photo (benchmarks/quality_spread.py), 1 s less on a 2-core CPU
    steps_photo: int = 150
    # the identity-loss stage (dlib features of render vs photo) is off by default: 30 steps cost
    # ~1 s and, measured with it off vs on (one run each, same photos): synthetic benchmark (6
    # scenes, seed 100) geometry 3.08 -> 2.84 mm, landmark NME 0.0129 -> 0.0088, image PSNR
    # 30.70 -> 30.90 dB; 10 real photos (facegcn evaluate): same-view PSNR coarse 22.46 -> 22.60,
    # refined 30.26 -> 30.62 dB, landmark NME 0.0370 -> 0.0357; novel-view fidelity unchanged
    # (issue 14's note). The GCN refinement keeps its own identity term.
    steps_identity: int = 0
    lr: float = 0.08
    lr_rigid: float = 0.02  # stage-1 (pose only) learning rate
    # photometric stage (None: lr). 0.06 (before: lr, 0.08), one run each, same machine: synthetic
    # benchmark (facegcn evaluate --synthetic 6 --seed 100) geometry 2.84 -> 2.52 mm, NME 0.0088 ->
    # 0.0084, texture PSNR refined 21.44 -> 22.16 dB, image PSNR refined 30.90 -> 30.67 dB; clean
    # renders (tests/coarse/test_fit.py's scenario, 6 seeds) 1.29 -> 1.21 mm; AFLW2000-3D (16 images,
    # mean of |yaw| bins) NME 4.89 -> 4.87 %. A lower rate for both stages (0.04) helped the benchmark
    # (2.11 mm) but left the clean renders unconverged (1.55 mm)
    lr_photo: float | None = 0.06
    # the first steps of the photometric stage rendered at half resolution (112², the photo and
    # mask average-pooled; coarse to fine), the rest at full; 0 = all at full. 100 of 150, one run
    # each: demo photo photometric stage 1.47 -> 1.28 s; synthetic benchmark (6 scenes, seed 100)
    # geometry 2.52 -> 2.55 mm, NME 0.0084 -> 0.0088, image PSNR 32.61 -> 32.60 dB: off by default
    photo_coarse_steps: int = 0
    identity_every: int = 4  # evaluate the identity term every k-th step of the identity stage
    contour_weight: float = 0.3
    # MediaPipe's 468 points on the model's surface (facegcn.coarse.dense; 0 = off), squared pixels
    # like the 68-point term, weighted by reliability × visibility × the landmark score × a ramp in
    # the front-end's |yaw| (dense_yaw: 0 below the first angle, 1 above the second). dlib's 68
    # points hold on frontal faces and fail on turned ones, MediaPipe's mesh holds on both but sits
    # ~2 px off the model's landmark vertices. Measured on AFLW2000-3D images (16 with .mat files,
    # YadiraF/PRNet's TestImages; NME % by |yaw| bin [0,30) [30,60) [60,90], mean): off 4.45 7.49
    # 14.60 8.85; 0.16 everywhere 4.70 5.42 9.65 6.59; 1.6 everywhere 4.85 5.37 8.68 6.30.
    dense_weight: float = 1.6
    dense_yaw: tuple[float, float] = (15.0, 35.0)
    identity_weight: float = 0.2
    photo_weight: float = 1.92
    landmark_weight: float = 1.6e-3


@dataclass
class RefineOptions:
    enabled: bool = True
    # 20 steps at 2e-3 from the photo start (before: 120 at 5e-3 from the 3DMM albedo, then 40 from
    # the photo). benchmarks/refine_steps.py, 9 real photos, AMD EPYC, 1 thread, one run: same-view
    # masked PSNR 40 steps 32.74, 30 steps 32.61, 20 steps 32.47 dB (120 from the albedo: 30.45);
    # exported mesh's fidelity the same (detail 0.697, dlib distance to the person's other photos
    # 0.537 / 0.534 / 0.536, accepted 0.81); refinement 2.0 / 1.5 / 1.1 s. At 5e-3 a run that
    # starts near the optimum can diverge late (one photo: 11 dB after 120 steps).
    steps: int = 20
    lr: float = 2e-3
    # evaluate the identity term every k-th refinement step. 8 (before: 4): 15 fewer identity-net
    # passes (~1 s); refined PSNR of 4 photos 30.64 vs 30.71 dB (per-photo spread ±0.7 dB)
    identity_every: int = 8
    # CPU: the generator's decoder and refiner on two threads (facegcn.refine.lanes; same maths,
    # ~1.3x faster refinement on 2 idle cores, no slower on a busy one)
    parallel: bool = True
    # start from the de-lit photo colours at the seen face vertices (facegcn.refine.photo_start)
    # instead of the 3DMM albedo; the vertex-wise loss keeps the 3DMM albedo as its reference
    photo_start: bool = True


@dataclass
class OutputOptions:
    formats: tuple[str, ...] = ("obj", "ply", "glb")
    texture_size: int = 1024
    # "albedo": de-lit photo detail over the GCN albedo; "lit": as photographed; "gcn": the GCN's
    # per-vertex albedo only (the paper's texture)
    texture: str = "albedo"
    # how the photo is read at the texels: "bicubic" (Catmull-Rom, the default: detail ratio of 9
    # real photos 0.59 -> 0.64) or "bilinear" (before)
    photo_filter: str = "bicubic"
    # share of the fitted SH shading the "albedo" texture removes (s): the blended albedo, photo
    # and model base alike, is multiplied by (E / mean)^(1-s), so 0 = "lit" and 1 = all of it (a
    # pure albedo, for relighting); 0.5 keeps half the photo's shading, which the exported head needs
    # to look like the person in an unlit view. 9 real photos, renders at 0/±30°, dlib vs the
    # person's other photos: dividing only the photo by mean^(1-s) E^s (before shading the base
    # too): accepted 0.48 -> 0.78, mean distance 0.611 -> 0.562, synthetic UV texture PSNR (seen
    # texels) 17.81 -> 17.53 dB; shading the model base too: 0.562 -> 0.534, accepted 0.78 -> 0.81,
    # to the same photo 0.495 -> 0.455, detail 0.744 -> 0.701
    delight: float = 0.5
    figures: bool = True


@dataclass
class Config(JsonConfig):
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

    @classmethod
    def preset(cls, name: str) -> "Config":
        """A named preset: ``"default"`` (full quality) or ``"fast"`` (fewer optimisation steps, for
        previews and tests). Returns a new, validated :class:`Config` to adjust further."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(sorted(PRESETS))}")
        return cls.from_dict(PRESETS[name])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        """Inverse of :meth:`to_dict`; omitted options keep their defaults, unknown ones raise."""
        return _build(cls, d, "config")

    def validate(self) -> "Config":
        if self.frontend.detector not in ("cascade", "dlib", "mtcnn"):
            raise ConfigError(f"unknown detector {self.frontend.detector!r} (choose cascade, dlib or mtcnn)")
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"unknown device {self.device!r} (choose cpu or cuda; cuda:N for the N-th GPU)")
        if not self.output.formats:
            raise ConfigError("no output format given (choose one or more of obj, ply, glb, e.g. --format glb)")
        bad = set(self.output.formats) - {"obj", "ply", "glb"}
        if bad:
            raise ConfigError(f"unknown output format(s) {', '.join(repr(b) for b in sorted(bad))}; "
                              "choose from obj, ply, glb")
        if self.output.texture not in ("albedo", "lit", "gcn"):
            raise ConfigError(f"unknown texture {self.output.texture!r} (choose albedo, lit or gcn)")
        if self.output.photo_filter not in ("bicubic", "bilinear"):
            raise ConfigError(f"unknown photo filter {self.output.photo_filter!r} (choose bicubic or bilinear)")
        if not 0.0 <= self.output.delight <= 1.0:
            raise ConfigError("output.delight must be between 0 (keep the photo's shading) and 1 (remove all of it)")
        if not 16 <= self.output.texture_size <= 8192:
            raise ConfigError("texture size must be between 16 and 8192")
        for name in ("steps_rigid", "steps_landmark", "steps_photo", "steps_identity", "photo_coarse_steps"):
            if getattr(self.coarse, name) < 0:
                raise ConfigError(f"coarse.{name} must be >= 0")
        ramp = tuple(self.coarse.dense_yaw)
        if len(ramp) != 2 or not 0 <= ramp[0] <= ramp[1] <= 90:
            raise ConfigError("coarse.dense_yaw must be two angles 0 <= start <= full <= 90 (degrees)")
        if self.coarse.dense_weight < 0:
            raise ConfigError("coarse.dense_weight must be >= 0")
        if self.threads < 0:
            raise ConfigError("threads must be >= 0 (0 = torch's default)")
        if self.refine.steps < 0:
            raise ConfigError("refine.steps must be >= 0")
        return self


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {  # preview quality: 130 coarse steps instead of 330, 10 refinement steps instead of 20
        "coarse": {"steps_rigid": 30, "steps_landmark": 60, "steps_photo": 40, "steps_identity": 0},
        "refine": {"steps": 10},
    },
}


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
