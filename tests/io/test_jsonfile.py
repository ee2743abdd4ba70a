"""strict_json: always valid JSON (checked by parsing with constants refused; reference: RFC 8259
has no NaN/Infinity, and ``json.dumps`` writes them by default)."""

import json
import math

import numpy as np
import pytest
import torch

from facegcn.io.jsonfile import json_safe, strict_json


def _strict_loads(s: str):
    def refuse(name):
        raise ValueError(name)

    return json.loads(s, parse_constant=refuse)


def test_default_json_would_write_nan():  # the failure strict_json exists for
    with pytest.raises(ValueError):
        _strict_loads(json.dumps({"a": float("nan")}))


def test_non_finite_become_null_and_numbers_survive():
    doc = {"nan": float("nan"), "inf": -math.inf, "f32": np.float32(0.25), "i64": np.int64(3),
           "arr": np.array([1.5, np.nan]), "t": torch.tensor([2.0, float("inf")]), "tup": (1, 2.5),
           "nested": [{"x": np.float64(np.nan)}], 7: True, "none": None, "s": "x"}
    back = _strict_loads(strict_json(doc))
    assert back == {"nan": None, "inf": None, "f32": 0.25, "i64": 3, "arr": [1.5, None], "t": [2.0, None],
                    "tup": [1, 2.5], "nested": [{"x": None}], "7": True, "none": None, "s": "x"}


def test_unknown_objects_become_strings():
    assert json_safe({"p": object}) == {"p": str(object)}
