"""facegcn.frontend: everything the losses need to know about a photo.

``observe(photo)`` → list of :class:`FaceObservation` (aligned 224² crop and its transform,
68 landmarks, MediaPipe's 468 dense landmarks + irises + a head-pose estimate, region labels +
skin weight, dlib identity descriptor). Pieces:

* :mod:`~facegcn.frontend.detect` — dlib HOG or MTCNN detection, O-Net verification, ranking;
* :mod:`~facegcn.frontend.cascade` — the default detector: dlib HOG + BlazeFace + MTCNN fallback;
* :mod:`~facegcn.frontend.facemesh` / :mod:`~facegcn.frontend.blazeface` — MediaPipe's networks in
  torch; :mod:`~facegcn.frontend.dense` — the dense landmarks of a detection, head pose;
* :mod:`~facegcn.frontend.dense_synth` — renders of the morphable model for the dense correspondence;
* :mod:`~facegcn.frontend.align` — 5-point similarity to Deep3DFaceRecon's 224² template;
* :mod:`~facegcn.frontend.mask` — landmark polygons + per-image skin colour (pluggable segmenter);
* :mod:`~facegcn.frontend.identity` — dlib's face-recognition ResNet ported to PyTorch;
* :mod:`~facegcn.frontend.mtcnn` — a small MTCNN on facenet-pytorch's weight files.
"""

from facegcn.frontend.align import TEMPLATE_224, Alignment, five_from_68, warp_to_photo
from facegcn.frontend.detect import DetectorConfig
from facegcn.frontend.mask import (
    LABELS,
    FaceSegmenter,
    LandmarkSkinSegmenter,
    Segmentation,
    SkinColourModel,
    save_label_png,
)
from facegcn.frontend.observe import FaceObservation, FrontendConfig, observe

__all__ = [
    "LABELS",
    "TEMPLATE_224",
    "Alignment",
    "DetectorConfig",
    "FaceObservation",
    "FaceSegmenter",
    "FrontendConfig",
    "LandmarkSkinSegmenter",
    "Segmentation",
    "SkinColourModel",
    "five_from_68",
    "observe",
    "save_label_png",
    "warp_to_photo",
]
