"""Compare two reconstruction output folders (e.g. ``facegcn demo`` of two commits).

    python tools/compare_outputs.py OLD_DIR NEW_DIR [--tol 1e-5]

Compares ``coeffs.json`` (every coefficient, camera, transform, landmarks: max |difference|), the
UV texture PNG (max |difference| in 8-bit levels and the share of texels that differ), the mesh
vertices of ``mesh.obj`` and the metrics of ``report.json``. Exits 1 when the coefficients differ
by more than ``--tol`` or the textures by more than one level.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def _flatten(o, prefix=""):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(o, list) and o and isinstance(o[0], (list, int, float)):
        yield prefix, np.asarray(o, dtype=np.float64)
    elif isinstance(o, (int, float)) and not isinstance(o, bool):
        yield prefix, np.asarray([o], dtype=np.float64)


def _obj_vertices(path: Path) -> np.ndarray:
    return np.array([[float(x) for x in ln.split()[1:4]] for ln in path.read_text().splitlines() if ln.startswith("v ")])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--tol", type=float, default=1e-5)
    a = ap.parse_args(argv)
    old = dict(_flatten(json.loads((a.old / "coeffs.json").read_text())))
    new = dict(_flatten(json.loads((a.new / "coeffs.json").read_text())))
    if old.keys() != new.keys():
        print(f"coeffs.json keys differ: {sorted(old.keys() ^ new.keys())}")
        return 1
    worst = max(float(np.abs(old[k] - new[k]).max()) for k in old)
    print(f"coeffs.json: {len(old)} fields, max |difference| {worst:.3g}")
    tex_old = sorted(a.old.glob("*.png"))
    tex_name = next((p.name for p in tex_old if p.name.startswith("mesh")), None)
    tex_diff = 0
    if tex_name:
        t0 = np.asarray(Image.open(a.old / tex_name), np.int16)
        t1 = np.asarray(Image.open(a.new / tex_name), np.int16)
        d = np.abs(t0 - t1)
        tex_diff = int(d.max())
        print(f"{tex_name}: {t0.shape}, max |difference| {tex_diff} levels, {float((d > 0).mean()) * 100:.4f} % texels differ")
    if (a.old / "mesh.obj").is_file():
        v0, v1 = _obj_vertices(a.old / "mesh.obj"), _obj_vertices(a.new / "mesh.obj")
        print(f"mesh.obj: {len(v0)} vertices, max |difference| {float(np.abs(v0 - v1).max()):.3g} m")
    m0 = json.loads((a.old / "report.json").read_text())["metrics"]
    m1 = json.loads((a.new / "report.json").read_text())["metrics"]
    for k in sorted(set(m0) | set(m1)):
        print(f"  {k:32s} old {m0.get(k)!s:>22}  new {m1.get(k)!s:>22}")
    return 0 if worst <= a.tol and tex_diff <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
