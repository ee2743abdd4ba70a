"""The `facegcn model` and `demo` commands, run in-process and as a console script."""

import subprocess
import sys

import numpy as np
import trimesh

from facegcn.cli import main


def test_model_info(capsys):
    assert main(["model", "info"]) == 0
    out = capsys.readouterr().out
    assert "vertices: 9409" in out and "identity_components: 100" in out
    assert "expression_components: 53" in out and "landmarks: 68" in out


def test_model_sample_writes_meshes(tmp_path):
    assert main(["model", "sample", "-o", str(tmp_path), "-n", "2", "--format", "obj,ply,glb"]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"sample_00{i}.{e}" for i in range(2) for e in ("glb", "obj", "ply")]
    a = trimesh.load(tmp_path / "sample_000.ply", process=False)
    b = trimesh.load(tmp_path / "sample_001.ply", process=False)
    assert len(a.vertices) == 9409 and not np.allclose(a.vertices, b.vertices)


def test_bad_inputs_one_line_errors(tmp_path, capsys):
    assert main(["model", "info", "--model", str(tmp_path / "none.mat")]) == 5
    assert main(["model", "sample", "-o", str(tmp_path), "--format", "stl"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


def test_console_script_demo(tmp_path):
    exe = [sys.executable, "-m", "facegcn", "demo", "--fast", "-o", str(tmp_path)]
    r = subprocess.run(exe, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    # the layout of `facegcn reconstruct`: the photo in OUT, its reconstruction in OUT/astronaut/
    assert (tmp_path / "astronaut.png").is_file() and (tmp_path / "astronaut" / "mesh.obj").is_file()
    assert f"{tmp_path / 'astronaut'}/mesh.obj" in r.stdout
    assert "Traceback" not in r.stderr
