"""Shared fixtures of the front-end tests: the astronaut photo (public domain) and its observations."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def astronaut_photo(astronaut):
    from facegcn.io.image import photo_from_array

    return photo_from_array(astronaut)


@pytest.fixture(scope="session")
def obs_dlib(astronaut_photo):
    from facegcn.frontend import observe

    return observe(astronaut_photo, detector="dlib")[0]


@pytest.fixture(scope="session")
def obs_mtcnn(astronaut_photo):
    from facegcn.frontend import observe

    return observe(astronaut_photo, detector="mtcnn")[0]


@pytest.fixture(scope="session")
def dlib_models():
    import dlib

    from facegcn.frontend.models import RESNET, SHAPE_5, SHAPE_68, dlib_model_path

    return {
        "hog": dlib.get_frontal_face_detector(),
        "sp5": dlib.shape_predictor(str(dlib_model_path(SHAPE_5))),
        "sp68": dlib.shape_predictor(str(dlib_model_path(SHAPE_68))),
        "rec": dlib.face_recognition_model_v1(str(dlib_model_path(RESNET))),
    }


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (the timings and the numba/torch mix of the dense tests)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
