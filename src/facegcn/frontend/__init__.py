"""facegcn.frontend: everything the losses need to know about a photo.

``observe(photo)`` → list of :class:`FaceObservation` (aligned 224² crop and its transform,
68 landmarks, region labels + skin weight, dlib identity descriptor). Pieces:

* :mod:`~facegcn.frontend.detect` — dlib HOG or MTCNN detection, O-Net verification, ranking;
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
