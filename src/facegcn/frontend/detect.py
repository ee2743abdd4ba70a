"""Face detection (dlib HOG, MTCNN, or the cascade of :mod:`facegcn.frontend.cascade`),
false-positive filtering, ranking and dlib landmarks.

False positives are real (dlib's HOG finds a second "face" on the suit in
``skimage.data.astronaut()``): every dlib candidate is re-scored by MTCNN's O-Net on its square
crop, which gives a face probability (≈1 for faces, ≈0.001 for that suit patch). Candidates below
``verify_threshold`` are dropped. MTCNN candidates carry their own cascade probability.

Ranking: by ``confidence × box area`` (largest of the confident faces first).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import torch

from facegcn.errors import ConfigError
from facegcn.frontend.align import TEMPLATE_224, estimate_alignment
from facegcn.frontend.models import SHAPE_5, SHAPE_68, dlib_model_path

# dlib's HOG rectangle relative to the canonical 5-point template (aligned 224² frame): centre and
# side, measured on dlib detections (used to seed dlib's shape predictors from MTCNN points).
DLIB_RECT_CENTRE_224 = np.array([112.0, 120.0])
DLIB_RECT_SIDE_224 = 137.0


@dataclass(frozen=True)
class DetectorConfig:
    dlib_upsample: int | None = None  # None: 1 when the (downscaled) image's long side ≤ 800, else 0
    dlib_threshold: float = 0.0  # dlib's own default decision threshold
    verify_threshold: float = 0.5  # O-Net face probability needed to keep a candidate
    mtcnn_min_face: float = 20.0
    mtcnn_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    max_detect_side: int = 1024  # detection runs on a copy downscaled to this long side
    # "cascade" (facegcn.frontend.cascade): stages run after dlib's HOG to add the faces it missed,
    # and stages run only when nothing was found yet
    cascade_add: tuple[str, ...] = ("blazeface",)
    cascade_fallback: tuple[str, ...] = ("mtcnn",)
    blazeface_kinds: tuple[str, ...] = ("short", "full")  # BlazeFace models ("short": 128², "full": 192²)


@dataclass(frozen=True, eq=False)
class Candidate:
    box: np.ndarray  # (4,) x1, y1, x2, y2 in photo pixels
    confidence: float  # face probability in [0, 1] (O-Net verification or MTCNN cascade)
    detector_score: float  # dlib's HOG SVM score, or the MTCNN probability
    detector: str
    points5: np.ndarray | None = None  # MTCNN's 5 points (eye centres, nose, mouth corners)
    keypoints: np.ndarray | None = None  # BlazeFace's 6 keypoints (eyes, nose tip, mouth, ears), (6, 2)

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


_lock = threading.Lock()
_objects: dict[str, object] = {}


def _get(name: str):
    import dlib

    with _lock:
        obj = _objects.get(name)
        if obj is None:
            if name == "hog":
                obj = _frontal_face_detector()
            elif name == "sp68":  # dlib's model, run by our port (facegcn.frontend.ert): same points, ms to load
                from facegcn.frontend.ert import ShapePredictor

                obj = ShapePredictor.load(dlib_model_path(SHAPE_68))
            elif name == "sp5":
                obj = dlib.shape_predictor(str(dlib_model_path(SHAPE_5)))
            else:  # pragma: no cover
                raise KeyError(name)
            _objects[name] = obj
    return obj


def _frontal_face_detector():
    """``dlib.get_frontal_face_detector()``, from a copy saved in the cache folder when there is one.

    dlib builds that detector by decoding a text-embedded model (~0.9 s on a 2-core CPU, a third of
    the front-end); ``fhog_object_detector(file)`` reads the same five HOG filters back from dlib's
    own binary serialisation in milliseconds (identical detections: tests/frontend). The copy is
    keyed by the dlib version and rebuilt when missing or unreadable."""
    import dlib

    from facegcn.cache import cache_dir
    from facegcn.io.atomic import atomic_write_bytes

    path = cache_dir("frontend") / f"dlib_frontal_face_detector-{getattr(dlib, '__version__', 'unknown')}.svm"
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except Exception:  # noqa: BLE001 - an unreadable copy is rebuilt
            pass
    det = dlib.get_frontal_face_detector()
    try:
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        det.save(str(tmp))
        atomic_write_bytes(path, tmp.read_bytes())
        tmp.unlink(missing_ok=True)
    except OSError:  # a read-only cache only costs the slow path next time
        pass
    return det


def _downscale(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = pixels.shape[:2]
    s = min(1.0, max_side / float(max(h, w)))
    if s >= 1.0:
        return pixels, 1.0
    from PIL import Image

    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = np.asarray(Image.fromarray(pixels).resize((nw, nh), Image.BILINEAR, reducing_gap=2.0))
    return small, nw / float(w)


def verify_boxes(pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """MTCNN O-Net face probability of each (x1,y1,x2,y2) box's square 48×48 crop."""
    from facegcn.frontend.mtcnn import _crops, _square, load_mtcnn

    if len(boxes) == 0:
        return np.zeros(0)
    _, _, onet = load_mtcnn()
    b = _square(torch.as_tensor(np.asarray(boxes, np.float64), dtype=torch.float32) + 1.0)  # 0- to 1-based
    with torch.no_grad():
        _, _, prob = onet((_crops(pixels, b, 48) - 127.5) * 0.0078125)
    return prob[:, 1].double().numpy()


def detect_dlib(pixels: np.ndarray, config: DetectorConfig | None = None) -> list[Candidate]:
    cfg = config or DetectorConfig()
    small, s = _downscale(pixels, cfg.max_detect_side)
    up = cfg.dlib_upsample if cfg.dlib_upsample is not None else (1 if max(small.shape[:2]) <= 800 else 0)
    rects, scores, _ = _get("hog").run(np.ascontiguousarray(small), int(up), float(cfg.dlib_threshold))
    if len(rects) == 0:
        return []
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float64) / s
    conf = verify_boxes(pixels, boxes)
    return [Candidate(box=b, confidence=float(c), detector_score=float(sc), detector="dlib")
            for b, c, sc in zip(boxes, conf, scores)]


def detect_mtcnn_candidates(pixels: np.ndarray, config: DetectorConfig | None = None) -> list[Candidate]:
    from facegcn.frontend.mtcnn import detect_mtcnn

    cfg = config or DetectorConfig()
    small, s = _downscale(pixels, cfg.max_detect_side)
    faces = detect_mtcnn(small, min_face=cfg.mtcnn_min_face, thresholds=cfg.mtcnn_thresholds)
    return [Candidate(box=f.box / s, confidence=f.score, detector_score=f.score, detector="mtcnn",
                      points5=f.points / s) for f in faces]


def find_faces(pixels: np.ndarray, detector: str = "dlib", config: DetectorConfig | None = None
               ) -> tuple[list[Candidate], int]:
    """Detected, verified and ranked faces (best first), and how many candidates were rejected.

    ``detector``: "dlib" (HOG), "mtcnn", or "cascade" (dlib's HOG, then the stages of
    ``config.cascade_add`` / ``cascade_fallback``: :mod:`facegcn.frontend.cascade`)."""
    cfg = config or DetectorConfig()
    if detector == "dlib":
        cands = detect_dlib(pixels, cfg)
    elif detector == "mtcnn":
        cands = detect_mtcnn_candidates(pixels, cfg)
    elif detector == "cascade":
        from facegcn.frontend.cascade import detect_cascade

        cands = detect_cascade(pixels, cfg)
    else:
        raise ConfigError(f"unknown detector {detector!r} (choose 'cascade', 'dlib' or 'mtcnn')")
    kept = [c for c in cands if c.confidence >= cfg.verify_threshold]
    kept.sort(key=lambda c: c.confidence * c.area, reverse=True)
    return kept, len(cands) - len(kept)


def dlib_rect_from_points5(points5: np.ndarray):
    """A dlib-HOG-like rectangle for a face given its 5 points (seeds the shape predictors)."""
    import dlib

    a = estimate_alignment(points5, rotation=True, template=TEMPLATE_224)
    c = a.to_photo(DLIB_RECT_CENTRE_224[None])[0]
    half = DLIB_RECT_SIDE_224 / a.scale / 2.0
    return dlib.rectangle(int(round(c[0] - half)), int(round(c[1] - half)), int(round(c[0] + half)),
                          int(round(c[1] + half)))


def dlib_rect_from_box(box: np.ndarray):
    import dlib

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return dlib.rectangle(x1, y1, x2, y2)


def shape_points(pixels: np.ndarray, rect, which: str = "sp68") -> np.ndarray:
    """dlib shape predictor output as (N,2) float64 (68 or 5 points); the 68-point model runs
    in :class:`facegcn.frontend.ert.ShapePredictor` (identical points; loads from a cache in ~20 ms
    instead of dlib's ~1 s), the small 5-point one in dlib."""
    if which == "sp68":
        return _get("sp68")(pixels, rect)
    shape = _get(which)(pixels, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)
