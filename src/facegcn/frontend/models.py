"""Where the shipped model files live (nothing is downloaded).

* dlib's detector-free models come from the ``face_recognition_models`` package. Its ``__init__``
  imports ``pkg_resources`` (deprecated, sometimes absent), so it is never imported: the package
  directory is located with :func:`importlib.util.find_spec`.
* MTCNN weights come from the ``facenet_pytorch`` wheel's ``data/`` folder, likewise located
  without importing the package (its code needs torchvision).
* MediaPipe's ``.tflite`` face networks come from the ``mediapipe`` wheel's ``modules/`` folder
  (installed ``--no-deps`` for its model files only); the package is never imported either.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from facegcn.errors import ModelFileError

SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
SHAPE_5 = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"


def _package_dir(package: str, hint: str) -> Path:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelFileError(f"package {package!r} is not installed ({hint})")
    return Path(locations[0])


def dlib_model_path(name: str) -> Path:
    """Path of one of ``face_recognition_models``' ``.dat`` files; ModelFileError when absent."""
    path = _package_dir("face_recognition_models", "pip install face-recognition-models") / "models" / name
    if not path.is_file() or path.stat().st_size == 0:
        raise ModelFileError(f"model file missing or empty: {path}")
    return path


def mtcnn_weight_path(net: str) -> Path:
    """Path of ``facenet_pytorch/data/{pnet,rnet,onet}.pt``; ModelFileError when absent."""
    if net not in ("pnet", "rnet", "onet"):
        raise ValueError(net)
    path = _package_dir("facenet_pytorch", "pip install --no-deps facenet-pytorch==2.6.0") / "data" / f"{net}.pt"
    if not path.is_file() or path.stat().st_size == 0:
        raise ModelFileError(f"MTCNN weight file missing or empty: {path}")
    return path


def mediapipe_model_path(relpath: str) -> Path:
    """Path of a model file inside the installed ``mediapipe`` package, without importing it.

    Args:
        relpath: path relative to the package directory, e.g.
            ``"modules/face_landmark/face_landmark.tflite"``.

    Returns:
        The file's path; ModelFileError (with an install hint) when the package or file is absent.
    """
    rel = Path(relpath)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(relpath)
    path = _package_dir("mediapipe", "pip install --no-deps mediapipe==0.10.14") / rel
    if not path.is_file() or path.stat().st_size == 0:
        raise ModelFileError(f"MediaPipe model file missing or empty: {path} (pip install --no-deps mediapipe==0.10.14)")
    return path
