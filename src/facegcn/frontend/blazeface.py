"""MediaPipe's BlazeFace face detectors in torch: SSD anchors, box + 6 keypoint decoding, weighted NMS.

Models (``mediapipe`` wheel, run by :class:`~facegcn.frontend.tflite_graph.TFLiteGraph`):
``face_detection_short_range.tflite`` (128², faces within ~2 m) and
``face_detection_full_range_sparse.tflite`` (192², smaller faces; its sparse weights are
densified at load time). Options are MediaPipe's ``face_detection*.pbtxt``: input RGB in [−1, 1],
the whole photo letterboxed (zero border) into the square input; ``SsdAnchorsCalculator`` with
min/max scale 0.1484375 / 0.75, offsets 0.5, aspect ratio 1, fixed anchor size (short range:
strides 8, 16, 16, 16 with an interpolated anchor each → 896 anchors; full range: stride 4, one
anchor → 2304); ``TensorsToDetectionsCalculator`` with scores clipped to ±100 then sigmoid,
coordinates (x, y, w, h, 6 × (x, y)) in input pixels relative to the anchor centre; weighted
non-maximum suppression at IoU 0.3; score thresholds 0.5 (short) and 0.6 (full).

Keypoints: image-left eye, image-right eye (MediaPipe's "right"/"left" eye of the subject), nose
tip, mouth centre, image-left ear tragion, image-right ear tragion. Photo pixel centres are at
integer coordinates. Not wired into the detector (see :mod:`facegcn.frontend.detect`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from facegcn.frontend.facemesh import RoiTransform, crop_photo
from facegcn.frontend.models import mediapipe_model_path
from facegcn.frontend.tflite_graph import TFLiteGraph


@dataclass(frozen=True)
class DetectorSpec:
    """One BlazeFace model and MediaPipe's options for it."""

    model: str
    size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    min_score: float
    nms_iou: float = 0.3


SHORT_RANGE = DetectorSpec("modules/face_detection/face_detection_short_range.tflite", 128, (8, 16, 16, 16), 1.0, 0.5)
FULL_RANGE = DetectorSpec("modules/face_detection/face_detection_full_range_sparse.tflite", 192, (4,), 0.0, 0.6)
SPECS = {"short": SHORT_RANGE, "full": FULL_RANGE}


def ssd_anchors(spec: DetectorSpec) -> np.ndarray:
    """Anchor centres (N, 2) float64 in [0, 1] of the input square, in MediaPipe's
    ``SsdAnchorsCalculator`` order: groups of consecutive layers with equal stride, then rows,
    columns, anchors. Each layer adds an aspect-ratio-1 anchor, plus an interpolated-scale one
    when ``interpolated_scale_aspect_ratio > 0``; with ``fixed_anchor_size`` every anchor has unit
    width and height, so the scales (0.1484375 … 0.75) do not enter the decoding."""
    n = len(spec.strides)
    out, layer = [], 0
    while layer < n:
        last = layer
        while last < n and spec.strides[last] == spec.strides[layer]:
            last += 1
        count = (last - layer) * (1 + (spec.interpolated_scale_aspect_ratio > 0))
        fm = -(-spec.size // spec.strides[layer])
        ys, xs = np.meshgrid((np.arange(fm) + 0.5) / fm, (np.arange(fm) + 0.5) / fm, indexing="ij")
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), count, axis=0))
        layer = last
    return np.concatenate(out)


class BlazeFaceNet(nn.Module):
    """A BlazeFace network returning MediaPipe's raw tensors.

    Args:
        spec: :data:`SHORT_RANGE` or :data:`FULL_RANGE`; path: optional ``.tflite`` override.
    """

    def __init__(self, spec: DetectorSpec = SHORT_RANGE, path=None):
        super().__init__()
        self.spec = spec
        self.graph = TFLiteGraph(path or mediapipe_model_path(spec.model))
        self.register_buffer("anchors", torch.from_numpy(ssd_anchors(spec)).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            x: (B, 3, S, S) float RGB in [−1, 1] on the module's device (S = ``spec.size``).

        Returns:
            regressors: (B, N, 16) float32 raw box/keypoint offsets in input pixels; logits:
            (B, N) float32 raw scores (N = number of anchors).
        """
        reg, cls = self.graph(x)
        return reg, cls.reshape(cls.shape[0], -1)

    def decode(self, reg: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw tensors → boxes (B, N, 4) x1, y1, x2, y2 and keypoints (B, N, 6, 2) in input pixels
        (pixel centres at integers, as the crop of :func:`detect_faces`), scores (B, N) in [0, 1]."""
        s = float(self.spec.size)
        centre = self.anchors * s
        xy = reg[..., :2] + centre
        half = reg[..., 2:4] / 2
        boxes = torch.cat([xy - half, xy + half], -1)
        kps = reg[..., 4:16].reshape(*reg.shape[:-1], 6, 2) + centre[:, None, :]
        return boxes, kps, torch.sigmoid(logits.clamp(-100.0, 100.0))


_NET_CACHE: dict[tuple, BlazeFaceNet] = {}
_NET_LOCK = threading.Lock()


def load_blazeface(kind: str = "short", device: str | torch.device = "cpu") -> BlazeFaceNet:
    """The shared :class:`BlazeFaceNet` (``kind`` "short" or "full") on ``device``; frozen weights."""
    key = (kind, str(device))
    with _NET_LOCK:
        net = _NET_CACHE.get(key)
        if net is None:
            net = BlazeFaceNet(SPECS[kind]).to(device).eval()
            for p in net.parameters():
                p.requires_grad_(False)
            _NET_CACHE[key] = net
    return net


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = 0.3):
    """MediaPipe's WEIGHTED non-maximum suppression: best first, each kept detection is the
    score-weighted mean (box and keypoints) of itself and the remaining detections overlapping it
    by IoU > ``iou``; it keeps its own score.

    Args:
        boxes: (N, 4) x1, y1, x2, y2; keypoints: (N, K, 2); scores: (N,), numpy.

    Returns:
        (boxes (M, 4), keypoints (M, K, 2), scores (M,)) float64, best first.
    """
    order = np.argsort(-scores, kind="stable")
    ob, ok, osc = [], [], []
    while order.size:
        best = order[0]
        near = _iou(boxes[best], boxes[order]) > iou
        near[0] = True
        group = order[near]
        w = scores[group][:, None]
        ob.append((boxes[group] * w).sum(0) / w.sum())
        ok.append((keypoints[group] * w[:, :, None]).sum(0) / w.sum())
        osc.append(scores[best])
        order = order[~near]
    k = keypoints.shape[1] if keypoints.ndim == 3 else 0
    if not ob:
        return np.zeros((0, 4)), np.zeros((0, k, 2)), np.zeros(0)
    return np.asarray(ob, np.float64), np.asarray(ok, np.float64), np.asarray(osc, np.float64)


@dataclass(frozen=True)
class BlazeFaceDetection:
    """One detected face in photo pixels: ``box`` (4,) x1, y1, x2, y2; ``keypoints`` (6, 2)
    (order in the module docstring); ``score`` in [0, 1]. float64."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float


def letterbox_roi(width: int, height: int, size: int) -> RoiTransform:
    """The whole photo, centred in a square of side max(width, height) (MediaPipe's
    ``keep_aspect_ratio`` detector input)."""
    return RoiTransform(np.array([(width - 1) / 2.0, (height - 1) / 2.0]), float(max(width, height)), 0.0, size)


@torch.no_grad()
def detect_faces(photo, *, kind: str = "short", min_score: float | None = None,
                 device: str | torch.device = "cpu") -> list[BlazeFaceDetection]:
    """BlazeFace on a whole photo.

    Args:
        photo: (H, W, 3) RGB, float in [0, 1] or uint8.
        kind: "short" (short range, 128²) or "full" (full range, 192²).
        min_score: score threshold; default MediaPipe's for the model (0.5 / 0.6).
        device: where the network runs.

    Returns:
        Detections in photo pixels, best score first (after weighted NMS).
    """
    net = load_blazeface(kind, device)
    spec = net.spec
    h, w = np.asarray(photo).shape[:2]
    roi = letterbox_roi(w, h, spec.size)
    crop = crop_photo(photo, roi, device, padding="zeros") * 2.0 - 1.0
    boxes, kps, scores = (t[0].double().cpu().numpy() for t in net.decode(*net(crop)))
    keep = scores >= (spec.min_score if min_score is None else min_score)
    boxes, kps, scores = weighted_nms(boxes[keep], kps[keep], scores[keep], spec.nms_iou)
    out = []
    for b, k, s in zip(boxes, kps, scores):
        corners = roi.to_photo(b.reshape(2, 2))
        out.append(BlazeFaceDetection(corners.reshape(4), roi.to_photo(k), float(s)))
    return out
