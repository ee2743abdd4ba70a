"""The README's Python example runs as written (on the bundled astronaut photo), and the public
names are importable from the package root."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

import facegcn

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_public_names():
    for name in facegcn.__all__:
        assert getattr(facegcn, name) is not None
    assert facegcn.Reconstructor.__module__.startswith("facegcn.pipeline")


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(data.astronaut()).save(tmp_path / "photo.jpg", quality=95)
    code = _readme_example()
    assert 'rec("photo.jpg")' in code and ".save(" in code
    env: dict = {}
    exec(compile(code, str(README), "exec"), env)
    out = capsys.readouterr().out.split()
    nme, glb = float(out[0]), Path(out[1])
    assert 0 < nme < 0.08  # a real fit of the astronaut (the fast preset measures ~0.04)
    assert glb.is_file() and glb.stat().st_size > 100_000
    report = json.loads((tmp_path / "out/photo/report.json").read_text())
    assert report["metrics"]["landmark_nme"] == nme
    assert np.isfinite(report["metrics"]["psnr_coarse"])

    # report.json stays strict JSON when a metric is not a number (NaN → null)
    face = env["faces"][0]
    face.metrics["psnr_refined"] = float("nan")
    face.metrics["extra"] = np.float32(np.inf)
    face.save(tmp_path / "again")

    def no_constants(name):
        raise AssertionError(f"report.json holds {name}, which is not JSON")

    again = json.loads((tmp_path / "again/report.json").read_text(), parse_constant=no_constants)
    assert again["metrics"]["psnr_refined"] is None and again["metrics"]["extra"] is None
    assert again["metrics"]["landmark_nme"] == nme
