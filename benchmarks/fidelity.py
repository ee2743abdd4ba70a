"""Fidelity of the exported mesh where users look, on a folder of real photos; optionally against an older checkout.

    python benchmarks/fidelity.py PHOTO_DIR [--old-src OLD/src] [--fast] [--labels CSV] [--json PATH]

For every photo of PHOTO_DIR (and of its sub-folders: a sub-folder is a person; ``--labels`` a CSV
``file,person`` overrides) the pipeline runs with its default settings (``--fast``: the fast
preset) and the *final* export (``export_mesh``: the mesh + texture a user opens) is measured
with :mod:`facegcn.apps.evaluate.fidelity` of *this* tree: detail ratio (frontal render vs photo),
see-through share (mean of yaw 0 and ±30 degrees), novel-view identity (dlib descriptor distance
of the renders to the photo, to the person's other photos, and the rejection rate against other
people's photos; threshold 0.6; renders without a detected face are misses).

Each tree runs in its own subprocess (``PYTHONPATH=<tree>/src``, the same interpreter / venv),
which reconstructs the photos and writes each export as arrays (``.npz``, no pickle); the metrics
are then computed here, with the same code, the same photo landmarks and descriptors (this tree's
front-end) for both trees, so the two columns differ only by the pipeline. A tree without
``export_mesh`` writes ``mesh.obj`` + texture with its own writer, read back with trimesh; the
landmark points are then the model's landmark vertices of the canonical shape. Prints a table per
photo and the means (per tree), old vs new with ratios, the machine and the commits; the last line
is the headline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


# ------------------------------------------------------------------ worker (runs on either tree)
def _config(fast: bool, threads: int):
    try:
        from facegcn.config import Config

        cfg = Config.preset("fast" if fast else "default")
    except (ImportError, AttributeError):  # older trees: the CLI's builder
        from facegcn.cli.reconstruct import build_config

        cfg = build_config(fast=fast, quiet=True)
    cfg.progress = False
    cfg.threads = threads
    cfg.output.formats = ("obj",)
    if hasattr(cfg.output, "figures"):
        cfg.output.figures = False
    return cfg


def _arrays_from_obj(path: Path) -> dict:
    """``mesh.obj`` (+ .mtl + textures) through trimesh → the arrays of a TexturedMesh (one
    material per trimesh geometry; vertices split at UV seams by trimesh, which is harmless here)."""
    import trimesh

    loaded = trimesh.load(str(path), process=False)
    geoms = list(loaded.geometry.values()) if isinstance(loaded, trimesh.Scene) else [loaded]
    verts, cols, uvs, out, off = [], [], [], {}, 0
    for k, g in enumerate(geoms):
        v = np.asarray(g.vertices, np.float32)
        vis = g.visual
        uv = getattr(vis, "uv", None)
        img = getattr(getattr(vis, "material", None), "image", None)
        if img is None and hasattr(getattr(vis, "material", None), "baseColorTexture"):
            img = vis.material.baseColorTexture
        col = np.full((len(v), 3), 0.5, np.float32)
        if getattr(vis, "kind", None) == "vertex":
            col = np.asarray(vis.vertex_colors, np.float32)[:, :3] / 255.0
        f = np.asarray(g.faces, np.int64) + off
        out[f"m{k}_faces"] = f
        if uv is not None and img is not None:
            out[f"m{k}_faces_uv"] = f
            out[f"m{k}_texture"] = np.asarray(img.convert("RGB"), np.uint8)
            uvs.append(np.asarray(uv, np.float32))
        else:
            uvs.append(np.zeros((len(v), 2), np.float32))
        verts.append(v)
        cols.append(col)
        off += len(v)
    out.update(vertices=np.concatenate(verts), vertex_colors=np.concatenate(cols), uv=np.concatenate(uvs),
               n_materials=np.array(len(geoms)))
    return out


def _export_arrays(res, cfg, tmp: Path) -> tuple[dict, str]:
    """The final export of one reconstruction as arrays, and how it was obtained."""
    m = res.model
    try:
        from facegcn.pipeline.export import export_mesh
    except ImportError:
        export_mesh = None
    if export_mesh is not None:
        mesh = export_mesh(res, cfg.output)
        out = {"vertices": mesh.vertices, "vertex_colors": mesh.vertex_colors,
               "uv": mesh.uv if mesh.uv is not None else np.zeros((1, 2), np.float32),
               "n_materials": np.array(len(mesh.materials))}
        for k, mat in enumerate(mesh.materials):
            out[f"m{k}_faces"] = mat.faces
            if mat.textured:
                out[f"m{k}_faces_uv"], out[f"m{k}_texture"] = mat.faces_uv, mat.texture
        how = "export_mesh"
    else:
        d = tmp / "out"
        (res.save(d) if hasattr(res, "save") else res.write(d))
        out, how = _arrays_from_obj(d / "mesh.obj"), "mesh.obj via trimesh"
    import torch

    with torch.no_grad():
        c = res.coarse.coeffs
        try:
            from facegcn.pipeline.export import canonical_mesh

            verts = canonical_mesh(res)[0]
        except ImportError:
            verts = m.shape(c.id, c.exp)[0] * 0.1
        out["landmarks3d"] = verts[m.landmark_idx].detach().cpu().double().numpy()
    return out, how


def worker(photo_dir: Path, out_dir: Path, fast: bool, threads: int) -> None:
    import facegcn
    import torch

    names = json.loads((out_dir / "photos.json").read_text())
    cfg = _config(fast, threads)
    from facegcn.pipeline import Reconstructor

    recon = Reconstructor(cfg)
    info = {"facegcn": str(Path(facegcn.__file__).resolve().parent), "torch_threads": torch.get_num_threads(),
            "photos": {}}
    for k, name in enumerate(names):
        t0 = time.perf_counter()
        try:
            res = recon(str(photo_dir / name))[0]
        except Exception as exc:  # noqa: BLE001 - report and go on
            info["photos"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  {name}: {type(exc).__name__}: {exc}", flush=True)
            continue
        t_rec = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            arrays, how = _export_arrays(res, cfg, Path(tmp))
        np.savez(out_dir / f"{k:04d}.npz", **arrays)
        info["photos"][name] = {"file": f"{k:04d}.npz", "time_s": t_rec, "export": how,
                                "refined": getattr(res, "refined_albedo", None) is not None}
        print(f"  {name}: {t_rec:.1f} s ({how})", flush=True)
    info["threads_after"] = torch.get_num_threads()
    (out_dir / "worker.json").write_text(json.dumps(info, indent=1))


# ------------------------------------------------------------------ parent (this tree)
def list_photos(photo_dir: Path) -> list[str]:
    out = []
    for p in sorted(photo_dir.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            out += [f"{p.name}/{q.name}" for q in sorted(p.iterdir())
                    if q.is_file() and q.suffix.lower() in IMAGE_EXT and not q.name.startswith(".")]
        elif p.suffix.lower() in IMAGE_EXT:
            out.append(p.name)
    return out


def run_tree(src: Path, photo_dir: Path, names: list[str], fast: bool, threads: int, label: str) -> tuple[Path, dict]:
    work = Path(tempfile.mkdtemp(prefix=f"facegcn-fidelity-{label}-"))
    (work / "photos.json").write_text(json.dumps(names))
    env = dict(os.environ, PYTHONPATH=str(src.resolve()), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(photo_dir), "--work", str(work),
           "--threads", str(threads)] + (["--fast"] if fast else [])
    print(f"[{label}] {src}: reconstructing {len(names)} photo(s)...", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    info = json.loads((work / "worker.json").read_text())
    info["wall_s"] = time.perf_counter() - t0
    if Path(info["facegcn"]) != (src / "facegcn").resolve():
        raise SystemExit(f"[{label}] the worker imported {info['facegcn']}, not {src / 'facegcn'}")
    return work, info


def load_mesh(path: Path):
    from facegcn.io.textured import Material, TexturedMesh

    z = np.load(path, allow_pickle=False)
    mats = []
    for k in range(int(z["n_materials"])):
        tex = f"m{k}_texture" in z.files
        mats.append(Material(f"m{k}", z[f"m{k}_faces"], z[f"m{k}_faces_uv"] if tex else None,
                             z[f"m{k}_texture"] if tex else None))
    v = z["vertices"]
    return TexturedMesh(v, np.zeros_like(v), z["vertex_colors"], z["uv"], tuple(mats)), z["landmarks3d"]


def measure_tree(work: Path, info: dict, photos: dict, persons: dict) -> list[dict]:
    from facegcn.apps.evaluate.fidelity import add_pair_columns, measure_views, view_name

    rows, res = [], []
    for name, p in photos.items():
        w = info["photos"].get(name, {})
        row = {"image": name, "time_s": w.get("time_s")}
        if "file" not in w or p is None:
            rows.append(row)
            res.append({})
            continue
        mesh, lm3 = load_mesh(work / w["file"])
        f = measure_views(mesh, lm3, p["pixels"], p["landmarks"], p["identity"])
        row.update(detail=f.detail, seethrough=float(np.nanmean(list(f.see_through.values()))), idmiss=f.misses)
        for y, d in f.photo_distance.items():
            row[f"iddist_{view_name(y)}"] = d
        ok = [d for d in f.photo_distance.values() if math.isfinite(d)]
        row["iddist"] = float(np.mean(ok)) if ok else float("nan")
        row["idaccept"] = float(np.mean([d < 0.6 for d in ok])) if ok else float("nan")
        rows.append(row)
        res.append({"x": f})
    have = [i for i, r in enumerate(rows) if res[i]]
    sub = [rows[i] for i in have]
    add_pair_columns(sub, [persons[rows[i]["image"]] for i in have], [photos[rows[i]["image"]]["identity"] for i in have],
                     [res[i] for i in have])
    for r in sub:  # "_x" suffix of the single variant → plain keys
        for k in [k for k in r if k.endswith("_x")]:
            r[k[:-2]] = r.pop(k)
    return rows


COLUMNS = [("detail", "detail", ".3f"), ("seethrough", "see-thr", ".4f"), ("iddist", "id photo", ".3f"),
           ("idaccept", "acc", ".2f"), ("idmiss", "miss", ".0f"), ("idsame", "id same", ".3f"),
           ("idsame_accept", "acc", ".2f"), ("idother_reject", "other rej", ".2f"), ("time_s", "time s", ".1f")]


def _mean(rows, k):
    v = [float(r[k]) for r in rows if isinstance(r.get(k), (int, float)) and math.isfinite(float(r[k]))]
    return float(np.mean(v)) if v else None


def _f(v, fmt):
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def print_table(title: str, rows: list[dict]) -> None:
    from facegcn.apps.evaluate.report import text_table

    header = ["image"] + [h for _, h, _ in COLUMNS]
    cells = [[r["image"]] + [_f(r.get(k), f) for k, _, f in COLUMNS] for r in rows]
    cells.append(["mean"] + [_f(_mean(rows, k), f) for k, _, f in COLUMNS])
    print(f"\n{title}\n" + text_table(header, cells))


def commit_of(path: Path) -> str:
    try:
        top = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, check=True).stdout.strip()
        sha = subprocess.run(["git", "-C", top, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", top, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"{sha}{' + uncommitted changes' if dirty else ''} ({top})"
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo_dir", type=Path)
    ap.add_argument("--old-src", type=Path, default=None, help="the src/ folder of an older checkout to compare with")
    ap.add_argument("--old-name", default=None, help="what to call the old tree when it is not a git checkout "
                    "(e.g. the commit it was exported from with git archive)")
    ap.add_argument("--fast", action="store_true", help="the fast preset (fewer optimisation steps)")
    ap.add_argument("--labels", type=Path, default=None, help="CSV file,person (default: sub-folders are people)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the workers (default 1)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the workers' exports (.npz) in /tmp")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.photo_dir, a.work, a.fast, a.threads)
        return 0

    import torch

    torch.set_num_threads(max(a.threads, 1))
    from benchmarks.run_all import machine_info, machine_line
    from facegcn.apps.evaluate.fidelity import person_of, read_labels
    from facegcn.errors import FaceGCNError
    from facegcn.frontend import observe
    from facegcn.io.image import load_image

    names = list_photos(a.photo_dir)
    if not names:
        raise SystemExit(f"{a.photo_dir}: no photos")
    labels = read_labels(a.labels) if a.labels else {}
    persons = {n: person_of(n, labels) for n in names}
    photos = {}
    for n in names:  # this tree's front-end: the same photo landmarks / descriptors for both trees
        try:
            ph = load_image(a.photo_dir / n)
            o = observe(ph)[0]
            photos[n] = {"pixels": ph.pixels, "landmarks": o.landmarks_photo, "identity": o.identity.double().numpy()}
        except FaceGCNError as exc:
            print(f"{n}: skipped ({exc})")
            photos[n] = None
    trees = [("new", REPO / "src")] + ([("old", a.old_src)] if a.old_src else [])
    results = {}
    for label, src in trees:
        work, info = run_tree(src, a.photo_dir, names, a.fast, a.threads, label)
        rows = measure_tree(work, info, photos, persons)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        commit = commit_of(src)
        if label == "old" and a.old_name and commit.startswith("unknown"):
            commit = a.old_name
        results[label] = {"rows": rows, "info": info, "src": str(src), "commit": commit}
        print_table(f"{label}: {src} ({results[label]['commit']}), final export, "
                    f"{'fast' if a.fast else 'default'} settings", rows)
    if a.old_src:
        from facegcn.apps.evaluate.report import text_table

        cells = []
        for k, h, f in COLUMNS:
            o, n = _mean(results["old"]["rows"], k), _mean(results["new"]["rows"], k)
            cells.append([h, _f(o, f), _f(n, f), "" if not o or n is None else f"{n / o:.2f}x"])
        print("\nmeans, old vs new\n" + text_table(["metric", "old", "new", "new / old"], cells))
    m = machine_info()
    m["torch_threads"] = results["new"]["info"]["torch_threads"]
    print(machine_line(m))
    for label, r in results.items():
        print(f"{label}: commit {r['commit']}; worker wall time {r['info']['wall_s']:.0f} s")
    if a.json:
        a.json.write_text(json.dumps({"machine": m, "trees": {k: {kk: vv for kk, vv in v.items()}
                                                               for k, v in results.items()}}, indent=1, default=str))
    nr = results["new"]["rows"]
    head = (f"fidelity: detail ratio {_f(_mean(nr, 'detail'), '.3f')}, see-through {_f(_mean(nr, 'seethrough'), '.4f')}, "
            f"id dist {_f(_mean(nr, 'iddist'), '.3f')}, same-person accept {_f(_mean(nr, 'idsame_accept'), '.2f')}")
    if a.old_src:
        orows = results["old"]["rows"]
        od, nd = _mean(orows, "detail"), _mean(nr, "detail")
        head += (f" (old: detail {_f(od, '.3f')}, see-through {_f(_mean(orows, 'seethrough'), '.4f')}, id dist "
                 f"{_f(_mean(orows, 'iddist'), '.3f')}; detail ratio {nd / od:.1f}x)" if od and nd else " (old: n/a)")
    print(f"{head} on {m['cpu']}, {len(names)} photos")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # benchmarks.run_all (machine_info)
    sys.exit(main())
