"""Run the whole performance suite; write one JSON and a markdown table (and print them).

Sections (each in its own child process, so its peak RSS is its own — ``os.wait4`` rusage):

==============  ====================================================  ===========================================
section         ours                                                  reference (measured in the same run)
==============  ====================================================  ===========================================
compare         the whole `facegcn reconstruct` process on the demo   the same command of the baseline checkout
                photo (start-up included), per stage + quality;       (``--baseline e9d0884``: a temporary git
                `facegcn batch --workers 2` photos/min                worktree, same venv); benchmarks/whole_command.py
rasterizer      benchmarks/render.py: numba rasterize+interpolate+bwd  the naive pure-torch rasterizer/interpolation
chebconv        benchmarks/cheb.py: facegcn ChebConv fwd+bwd           torch_geometric ChebConv (its faster style)
frontend        benchmarks/frontend.py: observe() per photo            dlib's native pipeline (HOG detect, 68 + 5
                                                                       landmarks, compute_face_descriptor)
coarse          benchmarks/coarse.py: per-photo fit, astronaut         the same fit with Renderer(backend="torch")
refinement      benchmarks/end_to_end.py: refine_texture alone         the same with the torch rasterizer backend
end-to-end      benchmarks/end_to_end.py: reconstruct + write          the same with the torch rasterizer backend
peak RSS        the end-to-end child's peak resident memory           python + import torch, numpy, facegcn
GPU (CUDA only) render / ChebConv / coarse / end-to-end on cuda         the CPU figures of this run (pyg for cheb)
==============  ====================================================  ===========================================

Every figure is given in ms (MB for memory) and as a ratio to its reference (``reference / ours``:
> 1 means ours is faster; for memory ``ours / baseline``). The machine (CPU model from
/proc/cpuinfo, cores, memory, torch and thread counts, GPU) is printed with the figures.

    python benchmarks/run_all.py [--out out/bench] [--quick] [--only compare,rasterizer,...] [--all]
        [--runs 3] [--baseline e9d0884] [--batch-photos 4] [--timeout 1200]

The default (``make bench``) runs compare, rasterizer and chebconv (~10 minutes on a 2-core CPU);
``--all`` adds the rest (10-20 minutes more). ``--quick``: fewer repeats and the ``--fast`` step
counts. The last printed line is the headline: the whole command's new/baseline ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SECTIONS = ("compare", "rasterizer", "chebconv", "frontend", "coarse", "end_to_end", "memory", "gpu")
DEFAULT_SECTIONS = ("compare", "rasterizer", "chebconv")  # `make bench`; --all for every section


# ------------------------------------------------------------------------------ machine
def machine_info() -> dict:
    """The machine, versions and commit (:func:`facegcn.evaluate.machine.machine_info`)."""
    from facegcn.evaluate.machine import machine_info as info

    return info()


def machine_line(m: dict) -> str:
    from facegcn.evaluate.machine import machine_line as line

    return line(m)


# ------------------------------------------------------------------------------ children
def run_child(cmd: list[str], timeout: float) -> dict:
    """Run ``cmd`` (cwd = repository root), return rc, stdout, stderr, wall seconds and the child's
    own peak RSS in MB (``os.wait4``)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=REPO, stdout=fo, stderr=fe, env=env, start_new_session=True)
        timed_out = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                break
            if time.perf_counter() - t0 > timeout:
                timed_out = True
                os.killpg(p.pid, signal.SIGKILL)
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.2)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode(errors="replace"), fe.read().decode(errors="replace")
    return {"rc": p.returncode, "stdout": out, "stderr": err, "wall_s": wall, "rss_mb": ru.ru_maxrss / 1024.0,
            "timed_out": timed_out}


def _py(script: str, *args) -> list[str]:
    return [sys.executable, str(HERE / script), *map(str, args)]


def _child_cmd(name: str, json_path: str, *args) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", name, "--child-json", json_path, *map(str, args)]


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def _fail(r: dict) -> str | None:
    if r["timed_out"]:
        return f"timed out after {r['wall_s']:.0f} s"
    if r["rc"] != 0:
        tail = _last_line(r["stderr"]) or _last_line(r["stdout"])
        return f"exit code {r['rc']}: {tail[:200]}"
    return None


# ------------------------------------------------------------------------------ parsers
_NUM = r"([0-9]+(?:\.[0-9]+)?)"


def parse_render(stdout: str) -> dict:
    """benchmarks/render.py's headline: '... : F ms (median M) vs naive torch N ms = Rx faster; ...'."""
    m = re.search(_NUM + r" ms \(median " + _NUM + r"[^)]*\) vs naive torch " + _NUM + r" ms = " + _NUM + "x", _last_line(stdout))
    if not m:
        raise ValueError(f"unexpected render.py output: {_last_line(stdout)!r}")
    ours, med, ref, _ = map(float, m.groups())
    return {"ours_ms": ours, "ours_median_ms": med, "ref_ms": ref, "ratio": ref / ours}


def parse_cheb(stdout: str) -> dict:
    """benchmarks/cheb.py: 'facegcn ChebConv ... best X ms', the two torch_geometric lines, ratio."""
    best = {}
    for line in stdout.splitlines():
        m = re.search(r"best\s+" + _NUM + r" ms", line)
        if not m:
            continue
        if line.startswith("facegcn ChebConv"):
            best["ours"] = float(m.group(1))
        elif line.startswith("torch_geometric"):
            best.setdefault("pyg", []).append(float(m.group(1)))
    if "ours" not in best or not best.get("pyg"):
        m = re.search(_NUM + r"x\s*$", _last_line(stdout))
        raise ValueError(f"unexpected cheb.py output: {_last_line(stdout)!r}" if not m else "no per-layer times")
    ref = min(best["pyg"])
    return {"ours_ms": best["ours"], "ref_ms": ref, "ratio": ref / best["ours"]}


def parse_frontend(stdout: str) -> dict:
    m = re.search(r"= " + _NUM + r" ms/photo", _last_line(stdout))
    if not m:
        raise ValueError(f"unexpected frontend.py output: {_last_line(stdout)!r}")
    return {"ours_ms": float(m.group(1))}


# ------------------------------------------------------------------------------ child sections
def child_baseline(args) -> dict:
    import numpy  # noqa: F401
    import torch  # noqa: F401

    import facegcn  # noqa: F401
    import facegcn.pipeline  # noqa: F401

    return {}


def child_frontend_dlib(args) -> dict:
    """dlib's native front-end on the astronaut: HOG detection (1 upsample), 68-point and 5-point
    shape predictors, compute_face_descriptor (C++ ResNet) — median of ``repeats`` after a warm-up."""
    import dlib
    import numpy as np
    from skimage import data

    from facegcn.frontend.models import RESNET, SHAPE_5, SHAPE_68, dlib_model_path

    img = np.ascontiguousarray(data.astronaut())
    det = dlib.get_frontal_face_detector()
    sp68 = dlib.shape_predictor(str(dlib_model_path(SHAPE_68)))
    sp5 = dlib.shape_predictor(str(dlib_model_path(SHAPE_5)))
    rec = dlib.face_recognition_model_v1(str(dlib_model_path(RESNET)))

    def once():
        rects = det(img, 1)
        r = rects[0]
        sp68(img, r)
        return np.asarray(rec.compute_face_descriptor(img, sp5(img, r)))

    once()
    ts = []
    for _ in range(max(args.repeats, 1)):
        t0 = time.perf_counter()
        once()
        ts.append(time.perf_counter() - t0)
    return {"ms": statistics.median(ts) * 1e3, "best_ms": min(ts) * 1e3}


def child_gpu_render(args) -> dict:
    """Rasterize + interpolate + backward of the BFM-sized relief grid: torch backend on CUDA vs
    the numba backend on the CPU (same inputs)."""
    import torch

    from facegcn.render import PerspectiveCamera, interpolate, rasterize
    from facegcn.render.meshgen import relief_grid

    verts, faces = relief_grid()
    cam = PerspectiveCamera()
    g = torch.Generator().manual_seed(0)
    vpx = cam.to_screen(verts[None])
    cols = torch.rand(1, verts.shape[0], 3, generator=g)
    grad = torch.randn(1, *cam.size, 3, generator=g)

    def timed(device, backend, n):
        dev = torch.device(device)
        v, c, f, gr = vpx.to(dev), cols.to(dev), faces.to(dev), grad.to(dev)

        def once():
            p = v.detach().requires_grad_(True)
            cc = c.detach().requires_grad_(True)
            fr = rasterize(p.detach(), f, cam.size, backend=backend)
            interpolate(cc, f, fr, p, backend=backend).backward(gr)
            if dev.type == "cuda":
                torch.cuda.synchronize()

        for _ in range(3):
            once()
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            once()
            ts.append(time.perf_counter() - t0)
        return min(ts) * 1e3

    return {"gpu_ms": timed("cuda", "torch", args.repeats * 4), "cpu_ms": timed("cpu", "numba", args.repeats * 4)}


CHILDREN = {"baseline": child_baseline, "frontend_dlib": child_frontend_dlib, "gpu_render": child_gpu_render}


# ------------------------------------------------------------------------------ the suite
def _row(section: str, figure: str, ours, unit: str, reference: str, ref=None, ratio=None, rss=None, note: str = "") -> dict:
    if ratio is None and ours and ref:
        ratio = ref / ours
    return {"section": section, "figure": figure, "ours": ours, "unit": unit, "reference": reference,
            "reference_value": ref, "ratio": ratio, "peak_rss_mb": rss, "note": note}


def compare_section(wc, args, raw: dict) -> list[dict]:
    """The headline: the whole `facegcn reconstruct` command, baseline checkout vs this tree, and
    `facegcn batch --workers 2` throughput (benchmarks/whole_command.py)."""
    print(f"[compare] facegcn reconstruct, baseline {args.baseline} vs this tree, {args.runs} alternating runs", flush=True)
    base = wc.Baseline(args.baseline, args.baseline_src)
    work = Path(tempfile.mkdtemp(prefix="facegcn-compare-"))
    try:
        photo = wc.demo_photo(work)
        res = wc.compare(REPO / "src", base.src, photo, args.runs, work, args.timeout)
        print("\n".join(wc.format_compare(res, base.label)), flush=True)
        res["batch"] = {}
        if args.batch_photos > 0:
            for name, src in (("new", REPO / "src"), ("baseline", base.src)):
                res["batch"][name] = b = wc.batch(src, photo, args.batch_photos, work, args.timeout)
                print(f"[compare] batch --workers {b['workers']} ({name}): {b['done']}/{b['photos']} photos in "
                      f"{b['wall_s']:.1f} s = {b['photos_per_min']:.2f} photos/min", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        base.close()
    raw["compare"] = res
    n, o = res["new"], res["baseline"]
    q = ", ".join(f"{k} {n['quality'].get(k) or float('nan'):.4f} (baseline {o['quality'].get(k) or float('nan'):.4f})"
                  for k in ("landmark_nme", "psnr_refined"))
    rows = [_row("whole command", "facegcn reconstruct, demo photo, whole process (median wall)", n["median_s"] * 1e3,
                 "ms", f"baseline {base.label}", o["median_s"] * 1e3, ratio=o["median_s"] / n["median_s"],
                 note=f"new/baseline {res['ratio']:.2f} (pairwise median, target <= 0.3); {q}")]
    for k in ("frontend_s", "coarse_s", "refine_s", "texture_s", "start_write_s"):
        a, c = n["stages_s"][k], o["stages_s"][k]
        rows.append(_row("whole command", f"stage {k[:-2]}", a * 1e3, "ms", "baseline", c * 1e3))
    for name, b in res["batch"].items():
        rows.append(_row("batch", f"facegcn batch --workers {b['workers']}, {b['photos']} photos ({name})",
                         b["photos_per_min"], "photos/min", "", note="" if not b["rc"] else f"exit {b['rc']}"))
    return rows


def run_suite(args) -> dict:
    quick = args.quick
    only = set(args.only.split(",")) if args.only else set(SECTIONS if args.all else DEFAULT_SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    machine = machine_info()
    sys.path.insert(0, str(HERE))
    import whole_command as wc

    machine["line"] = wc.machine_line()
    print(machine["line"], flush=True)
    rows: list[dict] = []
    raw: dict = {}
    tmpdir = tempfile.TemporaryDirectory(prefix="facegcn-runall-")
    T = args.timeout
    if "compare" in only:
        rows += compare_section(wc, args, raw)

    def step(name: str, cmd: list[str]) -> dict:
        print(f"[{name}] {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}", flush=True)
        r = run_child(cmd, T)
        raw[name] = {k: r[k] for k in ("rc", "wall_s", "rss_mb", "timed_out")} | {"last_line": _last_line(r["stdout"])}
        err = _fail(r)
        if err:
            print(f"[{name}] FAILED: {err}", flush=True)
        else:
            print(f"[{name}] {_last_line(r['stdout'])}  ({r['wall_s']:.0f} s, peak RSS {r['rss_mb']:.0f} MB)", flush=True)
        return r

    def jpath(name: str) -> str:
        return str(Path(tmpdir.name) / f"{name}.json")

    def load(name: str) -> dict:
        return json.loads(Path(jpath(name)).read_text())

    fast = ["--fast"] if quick else []
    cpu: dict = {}
    if "rasterizer" in only:
        r = step("rasterizer", _py("render.py", "--repeat", 8 if quick else 30, "--ref-repeat", 2 if quick else 5))
        try:
            d = parse_render(r["stdout"]) if not _fail(r) else None
        except ValueError as exc:
            d, r["err"] = None, str(exc)
        rows.append(_row("rasterizer", "render 224² 35.7k V / 70.7k F: rasterize + interpolate + backward",
                         d and d["ours_ms"], "ms", "naive torch rasterizer", d and d["ref_ms"], rss=r["rss_mb"],
                         note=_fail(r) or r.get("err", "")))
    if "chebconv" in only:
        if (HERE / "cheb.py").is_file():
            r = step("chebconv", _py("cheb.py", "--repeat", 3 if quick else 7))
            try:
                d = parse_cheb(r["stdout"]) if not _fail(r) else None
            except ValueError as exc:
                d, r["err"] = None, str(exc)
            rows.append(_row("chebconv", "ChebConv K=6 16→16, 35.7k V, batch 4: forward + backward", d and d["ours_ms"],
                             "ms", "torch_geometric ChebConv", d and d["ref_ms"], rss=r["rss_mb"],
                             note=_fail(r) or r.get("err", "")))
        else:
            rows.append(_row("chebconv", "ChebConv forward + backward", None, "ms", "torch_geometric ChebConv",
                             note="benchmarks/cheb.py not present"))
    if "frontend" in only:
        r = step("frontend", _py("frontend.py", "--repeats", 2 if quick else 5))
        rr = step("frontend_dlib", _child_cmd("frontend_dlib", jpath("frontend_dlib"), "--repeats", 2 if quick else 5))
        try:
            d = parse_frontend(r["stdout"]) if not _fail(r) else None
        except ValueError as exc:
            d, r["err"] = None, str(exc)
        ref = load("frontend_dlib")["ms"] if not _fail(rr) else None
        rows.append(_row("frontend", "front-end per photo (astronaut): detect + landmarks + align + mask + identity",
                         d and d["ours_ms"], "ms", "dlib native (HOG + 68/5 pts + compute_face_descriptor)", ref,
                         rss=r["rss_mb"], note=_fail(r) or r.get("err", "") or (_fail(rr) or "")))
    if "coarse" in only:
        r = step("coarse", _py("coarse.py", "--json", jpath("coarse"), "--repeat", 1 if quick else 2, "--ref-repeat", 1, *fast))
        d = None if _fail(r) else load("coarse")
        if d:
            cpu["coarse"] = d["ours"]["best_ms"]
            s = d["steps"]
            fig = f"coarse fit per photo (astronaut, ICT, steps {s['rigid']}/{s['landmark']}/{s['photo']}/{s['identity']})"
        else:
            fig = "coarse fit per photo (astronaut, ICT)"
        rows.append(_row("coarse", fig, d and d["ours"]["best_ms"], "ms", "same fit, naive torch rasterizer",
                         d and d["reference"]["best_ms"], rss=r["rss_mb"], note=_fail(r) or ""))
        raw["coarse"]["result"] = d
    if "end_to_end" in only or "memory" in only:
        r = step("end_to_end", _py("end_to_end.py", "--json", jpath("end_to_end"), "--repeat", 1 if quick else 2,
                                   "--ref-repeat", 1, *fast))
        d = None if _fail(r) else load("end_to_end")
        raw["end_to_end"]["result"] = d
        if d:
            cpu["end_to_end"] = d["ours"]["best_ms"]
        if "end_to_end" in only:
            if d and d.get("refine_available"):
                rows.append(_row("refinement", f"GCN texture refinement alone ({d['refine_steps']} steps)",
                                 d["ours"]["refine_best_ms"], "ms", "same, naive torch rasterizer",
                                 d["reference"]["refine_best_ms"], rss=None))
            else:
                rows.append(_row("refinement", "GCN texture refinement alone", None, "ms", "same, naive torch rasterizer",
                                 note=_fail(r) or "refinement module not available"))
            steps = "" if not d else f" (coarse {'/'.join(map(str, d['coarse_steps']))}, refine {d['refine_steps']})"
            rows.append(_row("end_to_end", "reconstruct + write, astronaut" + steps, d and d["ours"]["best_ms"], "ms",
                             "same, naive torch rasterizer", d and d["reference"]["best_ms"], rss=r["rss_mb"],
                             note=_fail(r) or ""))
        if "memory" in only:
            b = step("baseline", _child_cmd("baseline", jpath("baseline")))
            rows.append(_row("memory", "peak RSS of the end-to-end reconstruct process", None if _fail(r) else r["rss_mb"],
                             "MB", "python + import torch, numpy, facegcn", None if _fail(b) else b["rss_mb"],
                             ratio=None if (_fail(r) or _fail(b)) else r["rss_mb"] / b["rss_mb"],
                             note="ratio = ours / baseline (lower is better)"))
    if "gpu" in only:
        import torch

        if not torch.cuda.is_available():
            rows.append(_row("gpu", "GPU section", None, "ms", "", note="skipped: CUDA not available"))
        else:
            r = step("gpu_render", _child_cmd("gpu_render", jpath("gpu_render"), "--repeats", 3 if quick else 10))
            d = None if _fail(r) else load("gpu_render")
            rows.append(_row("gpu", "render (torch backend, CUDA) rasterize + interpolate + backward",
                             d and d["gpu_ms"], "ms", "numba on this CPU", d and d["cpu_ms"], rss=r["rss_mb"],
                             note=_fail(r) or ""))
            if (HERE / "cheb.py").is_file():
                r = step("gpu_chebconv", _py("cheb.py", "--device", "cuda", "--repeat", 3 if quick else 7))
                try:
                    d = parse_cheb(r["stdout"]) if not _fail(r) else None
                except ValueError as exc:
                    d, r["err"] = None, str(exc)
                rows.append(_row("gpu", "ChebConv forward + backward (CUDA)", d and d["ours_ms"], "ms",
                                 "torch_geometric ChebConv (CUDA)", d and d["ref_ms"], rss=r["rss_mb"],
                                 note=_fail(r) or r.get("err", "")))
            r = step("gpu_coarse", _py("coarse.py", "--device", "cuda", "--no-reference", "--json", jpath("gpu_coarse"),
                                       "--repeat", 1 if quick else 2, *fast))
            d = None if _fail(r) else load("gpu_coarse")
            rows.append(_row("gpu", "coarse fit per photo (CUDA)", d and d["ours"]["best_ms"], "ms",
                             "the CPU coarse fit of this run", cpu.get("coarse"), rss=r["rss_mb"], note=_fail(r) or ""))
            r = step("gpu_end_to_end", _py("end_to_end.py", "--device", "cuda", "--no-reference", "--json",
                                           jpath("gpu_end_to_end"), "--repeat", 1 if quick else 2, *fast))
            d = None if _fail(r) else load("gpu_end_to_end")
            rows.append(_row("gpu", "reconstruct + write (CUDA)", d and d["ours"]["best_ms"], "ms",
                             "the CPU end-to-end of this run", cpu.get("end_to_end"), rss=r["rss_mb"], note=_fail(r) or ""))
    tmpdir.cleanup()
    return {"machine": machine, "quick": quick, "rows": rows, "raw": raw,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _num(v, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "photos/min":
        return f"{v:.2f}"
    return f"{v:.0f}" if (unit == "ms" and v >= 100) or unit == "MB" else f"{v:.2f}"


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# facegcn benchmarks ({'quick' if result['quick'] else 'full'} run, {result['date']})", "",
             m.get("line") or machine_line(m), "",
             "Ratio = reference / ours (× faster) for times; ours / reference for memory.", "",
             "| section | figure | ours | reference | reference value | ratio | peak RSS (MB) | note |",
             "|---|---|---:|---|---:|---:|---:|---|"]
    for r in result["rows"]:
        u = r["unit"]
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        rss = "—" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        lines.append(f"| {r['section']} | {r['figure']} | {_num(r['ours'], u)} {u if r['ours'] is not None else ''} | "
                     f"{r['reference']} | {_num(r['reference_value'], u)} {u if r['reference_value'] is not None else ''} | "
                     f"{ratio} | {rss} | {r['note'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "out" / "bench"), help="folder for bench.json and bench.md")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, --fast step counts")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(SECTIONS)} "
                    f"(default: {','.join(DEFAULT_SECTIONS)})")
    ap.add_argument("--all", action="store_true", help="every section (10-20 more minutes on a 2-core CPU)")
    ap.add_argument("--runs", type=int, default=3, help="compare: alternating whole-command runs per side")
    ap.add_argument("--baseline", default="e9d0884", help="compare: baseline git revision (temporary worktree)")
    ap.add_argument("--baseline-src", default=None, help="compare: an existing checkout's src folder instead")
    ap.add_argument("--batch-photos", type=int, default=4, help="compare: photos for the batch throughput (0 = skip)")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per child process")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-json", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        res = CHILDREN[args.child](args)
        if args.child_json:
            Path(args.child_json).write_text(json.dumps(res))
        print(json.dumps(res))
        return 0
    t0 = time.perf_counter()
    result = run_suite(args)
    result["wall_s"] = time.perf_counter() - t0
    from facegcn.io.atomic import atomic_write_text

    out = Path(args.out)
    md = markdown(result)
    atomic_write_text(out / "bench.json", json.dumps(result, indent=1))
    atomic_write_text(out / "bench.md", md)
    print()
    print(md)
    print(f"wrote {out / 'bench.json'} and {out / 'bench.md'} ({result['wall_s']:.0f} s)")
    cmp_ = result["raw"].get("compare")
    if cmp_:  # the headline, last: the whole command's new/baseline ratio
        for name, b in cmp_.get("batch", {}).items():
            print(f"batch throughput ({name}): {b['photos_per_min']:.2f} photos/min (facegcn batch --workers "
                  f"{b['workers']}, {b['photos']} photos)")
        print(f"whole command (facegcn reconstruct, demo photo): {cmp_['new']['median_s']:.1f} s vs baseline "
              f"{cmp_['baseline']['median_s']:.1f} s = new/baseline {cmp_['ratio']:.2f} (target <= 0.3) on "
              f"{result['machine']['cpu']}, {result['machine']['cores']} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
