"""Named groups of MediaPipe's 468 face-mesh points.

The index sets are the vertices of MediaPipe's ``face_mesh_connections.py`` contour lists
(``FACEMESH_LIPS``, ``..._LEFT_EYE`` etc.; Apache License 2.0, The MediaPipe Authors), copied here so
the package never imports ``mediapipe``. MediaPipe's "left" is the subject's left (image right).
"""

from __future__ import annotations

import numpy as np

LIPS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269, 270,
        291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)
LEFT_EYE = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
RIGHT_EYE = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
LEFT_EYEBROW = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
RIGHT_EYEBROW = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
FACE_OVAL = (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251, 284, 288,
             297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454)
NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440)

REGIONS = {"lips": LIPS, "left_eye": LEFT_EYE, "right_eye": RIGHT_EYE, "left_eyebrow": LEFT_EYEBROW,
           "right_eyebrow": RIGHT_EYEBROW, "face_oval": FACE_OVAL, "nose": NOSE}
#: the inner-face points: eyes, lips, nose
INNER = tuple(sorted(set(LIPS) | set(LEFT_EYE) | set(RIGHT_EYE) | set(NOSE)))


def region_mask(name: str, n: int = 468) -> np.ndarray:
    """(n,) bool mask of a :data:`REGIONS` name, or ``"inner"`` (:data:`INNER`)."""
    m = np.zeros(n, bool)
    m[list(INNER if name == "inner" else REGIONS[name])] = True
    return m
