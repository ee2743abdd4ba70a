"""`facegcn batch` killed with SIGKILL mid-run, then `--resume`: no torn files, finished items skipped,
final outputs equal to those of an uninterrupted run.

Four small photos made from skimage's public-domain astronaut (crops, mirror, rescale). Three runs
of ``python -m facegcn batch IN -o OUT --fast --no-refine -q --texture-size 256`` as subprocesses:

1. uninterrupted, into ``ref/`` (the reference);
2. into ``run/``, killed (SIGKILL) once at least one item has its ``.done`` marker and, if we
   catch it, while the next item is writing its files; then every file present must be complete
   (JSON parses, PNG decodes, meshes load with the reference's vertex/face counts, GLB length
   matches its header) and ``.done`` must only be where ``report.json`` is;
3. ``--resume`` into ``run/``: exit code 0, the items finished before the kill are reported as
   resumed and left untouched, the others are done, and every ``coeffs.json`` equals the reference's
   within 1e-6. (A kill inside an atomic write may leave its ``.NAME.XXXXXXXX.tmp``; such files are
   recorded and, if ``--resume`` leaves them behind, reported as a warning, not a failure.)

The batch command has no thread option (``--workers 1`` runs in-process with the config's
threads): the subprocesses get ``OMP_NUM_THREADS=1`` and friends instead.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from facegcn.apps.batch import DONE_MARKER, SUMMARY_NAME

N_PHOTOS = 4
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _photos(folder: Path) -> list[Path]:
    from PIL import Image
    from skimage import data

    a = data.astronaut()
    folder.mkdir(parents=True)
    imgs = {
        "p1.png": a[0:256, 92:348],
        "p2.png": np.ascontiguousarray(a[8:264, 100:356][:, ::-1]),
        "p3.png": np.asarray(Image.fromarray(a[0:300, 70:370]).resize((240, 240), Image.BILINEAR)),
        "p4.png": np.ascontiguousarray(a[4:260, 84:340][:, ::-1]),
    }
    for name, img in imgs.items():
        Image.fromarray(img).save(folder / name)
    return [folder / n for n in imgs]


def _cmd(inp: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "facegcn", "batch", str(inp), "-o", str(out), "--fast", "--no-refine", "-q",
            "--texture-size", "256", "--workers", "1", *extra]


def _env() -> dict:
    return {**os.environ, **ONE_THREAD, "PYTHONUNBUFFERED": "1"}


def _run(cmd, timeout=120) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout)
    return p, time.perf_counter() - t0


def _done(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob(f"*/{DONE_MARKER}"))


def _coeffs(d: Path) -> np.ndarray:
    c = json.loads((d / "coeffs.json").read_text())["coefficients"]
    return np.concatenate([np.asarray(c[k], np.float64).ravel() for k in sorted(c)])


def _is_tmp(p: Path) -> bool:  # facegcn.io.atomic's temporary name: ".NAME.XXXXXXXX.tmp"
    return p.name.startswith(".") and p.name.endswith(".tmp")


def _check_complete(p: Path, counts: dict) -> None:
    """``p`` is a whole file of its kind (raises AssertionError otherwise)."""
    from PIL import Image

    from facegcn.io.mesh import read_glb, read_obj, read_ply

    s = p.suffix.lower()
    if p.name == DONE_MARKER:
        m = json.loads(p.read_text())
        assert m["row"]["status"] == "ok", m
    elif s == ".json":
        json.loads(p.read_text())
    elif s == ".png":
        with Image.open(p) as im:
            im.load()
    elif s == ".csv":
        with p.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows and all(r["status"] for r in rows), rows
    elif s == ".glb":
        b = p.read_bytes()
        assert b[:4] == b"glTF" and int.from_bytes(b[8:12], "little") == len(b), p
        m = read_glb(p)
        assert (len(m.vertices), len(m.faces)) == counts["glb"], p
    elif s == ".ply":
        m = read_ply(p)
        assert (len(m.vertices), len(m.faces)) == counts["ply"], p
    elif s == ".obj":
        assert p.read_bytes().endswith(b"\n"), p
        m = read_obj(p)
        assert (len(m.vertices), len(m.faces)) == counts["obj"], p
    elif s == ".mtl":
        assert p.read_text().rstrip().splitlines()[-1].startswith("map_Kd"), p
    else:
        raise AssertionError(f"unexpected output file {p}")


def _mesh_counts(d: Path) -> dict:
    from facegcn.io.mesh import read_glb, read_obj, read_ply

    return {k: (len(m.vertices), len(m.faces)) for k, m in
            (("glb", read_glb(d / "mesh.glb")), ("ply", read_ply(d / "mesh.ply")), ("obj", read_obj(d / "mesh.obj")))}


@pytest.mark.slow
def test_batch_killed_then_resumed_equals_uninterrupted(tmp_path, artifacts_dir):
    t_test = time.perf_counter()
    photos = _photos(tmp_path / "in")
    names = [p.stem for p in photos]

    # ---- 1. the reference: an uninterrupted run
    ref = tmp_path / "ref"
    p, ref_s = _run(_cmd(tmp_path / "in", ref))
    assert p.returncode == 0, p.stderr
    assert _done(ref) == names
    counts = _mesh_counts(ref / names[0])

    # ---- 2. the same batch, killed mid-run
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(tmp_path / "in", out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    t0, first_done, killed_writing = time.perf_counter(), None, False
    try:
        while True:
            assert proc.poll() is None, f"the batch finished before it could be killed: {proc.communicate()}"
            assert time.perf_counter() - t0 < 90, "no item finished within 90 s"
            done = _done(out)
            if done and first_done is None:
                first_done = time.perf_counter()
            if done:
                # best: kill while the next item is writing its files; else shortly after the first marker
                writing = [d for d in out.iterdir() if d.is_dir() and d.name not in done and any(d.iterdir())]
                if writing or len(done) >= N_PHOTOS - 1 or time.perf_counter() - first_done > 1.5:
                    killed_writing = bool(writing)
                    break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    done_at_kill = _done(out)
    assert 1 <= len(done_at_kill) < N_PHOTOS, done_at_kill

    # no torn files: everything present is whole; a marker only where the item's report is
    leftovers = []
    for f in sorted(out.rglob("*")):
        if f.is_dir():
            continue
        if _is_tmp(f):  # an atomic write cut short: never under the final name (documented in facegcn.io.atomic)
            leftovers.append(str(f.relative_to(out)))
            continue
        _check_complete(f, counts)
    for d in out.iterdir():
        if (d / DONE_MARKER).exists():
            assert (d / "report.json").is_file() and (d / "coeffs.json").is_file(), d
            assert {f.name for f in d.iterdir() if not _is_tmp(f)} == {f.name for f in (ref / d.name).iterdir()}
    partial = {d.name: sorted(f.name for f in d.iterdir())
               for d in sorted(out.iterdir()) if d.is_dir() and d.name not in done_at_kill}
    before = {f: f.stat().st_mtime_ns for n in done_at_kill for f in (out / n).iterdir()}

    # ---- 3. --resume: skips the finished items, completes the rest
    p, resume_s = _run(_cmd(tmp_path / "in", out, "--resume"))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert f"{N_PHOTOS} of {N_PHOTOS} ok ({len(done_at_kill)} resumed)" in p.stdout, p.stdout
    with (out / SUMMARY_NAME).open(newline="") as fh:
        rows = {Path(r["input"]).stem: r for r in csv.DictReader(fh)}
    assert sorted(rows) == names
    assert all(r["status"] == "ok" and r["exit_code"] == "0" for r in rows.values()), rows
    assert sorted(n for n, r in rows.items() if r["resumed"] == "True") == done_at_kill
    assert {f: f.stat().st_mtime_ns for f in before} == before  # finished items untouched
    assert _done(out) == names

    # the final outputs equal those of the uninterrupted run
    for n in names:
        np.testing.assert_allclose(_coeffs(out / n), _coeffs(ref / n), rtol=0, atol=1e-6, err_msg=n)
        assert {f.name for f in (out / n).iterdir() if not _is_tmp(f)} == {f.name for f in (ref / n).iterdir()}
        for f in (out / n).iterdir():
            if not _is_tmp(f):
                _check_complete(f, counts)
    stale = sorted(str(f.relative_to(out)) for f in out.rglob("*.tmp") if _is_tmp(f))
    if stale:  # harmless (never read) but untidy; not asserted: it depends on where the kill lands
        warnings.warn(f"--resume redid the item(s) but left the killed run's temporary files: {stale}", stacklevel=1)

    stats = {"photos": N_PHOTOS, "uninterrupted_s": round(ref_s, 2), "done_at_kill": done_at_kill,
             "partial_at_kill": partial, "killed_while_writing": killed_writing, "tmp_left_by_kill": leftovers,
             "tmp_left_after_resume": stale, "resume_s": round(resume_s, 2),
             "test_s": round(time.perf_counter() - t_test, 1)}
    (artifacts_dir / "batch_kill.json").write_text(json.dumps(stats, indent=1) + "\n")
    print(f"batch kill/resume: {stats}")
