"""Whole-command benchmark: `facegcn reconstruct` of the demo photo by a baseline checkout and by
this tree, side by side, plus `facegcn batch --workers 2` throughput.

What is timed is the whole process, as a user runs it (interpreter start, imports, model loading,
front-end, coarse fit, GCN refinement, texture, writing the files): each side is started
``--runs`` times, alternating (new, baseline, new, ...) so that a drift of the machine's speed hits
both alike; the figure is the median wall time, and the ratio is the median of the per-pair
``new / baseline`` ratios. Both sides use the same interpreter and virtual environment (the
baseline's ``src`` goes first on ``PYTHONPATH``), the same photo, the same cache folder
(``FACEGCN_CACHE``, warmed) and each side runs once untimed first (numba compiles its kernels into
its own checkout's ``__pycache__``; the caches are built). Per-stage seconds and the quality figures
come from each run's ``report.json``: ``landmark_nme`` (inter-ocular), ``psnr_coarse`` /
``psnr_refined`` (same-view masked PSNR in the aligned frame) and ``identity_cos_photo_refined``.

Baseline: ``--baseline REV`` (default ``e9d0884``, the commit before the speed work) is checked out
with ``git worktree add --detach`` into a temporary folder and removed afterwards; or
``--baseline-src DIR`` names the ``src`` folder of an existing checkout.

Batch: ``--batch-photos N`` copies of the photo (distinct names) in one folder, ``facegcn batch
FOLDER --workers 2`` (models loaded once per worker), photos per minute from the whole command's
wall time (start-up and model loading included).

    python benchmarks/whole_command.py [--runs 3] [--baseline e9d0884 | --baseline-src DIR]
        [--photo PATH] [--batch-photos 4] [--no-batch] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BASELINE = "e9d0884"
STAGES = ("frontend_s", "coarse_s", "refine_s", "texture_s", "total_s")
QUALITY = ("landmark_nme", "psnr_coarse", "psnr_refined", "identity_cos_photo_refined")


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()


def commit_line() -> str:
    """This checkout's commit (:func:`facegcn.evaluate.machine.commit_line`)."""
    from facegcn.evaluate.machine import commit_line as line

    return line(REPO)


def machine_line() -> str:
    """CPU model, cores, load, thread settings, torch / numba versions, GPU, git commit (facegcn runs
    with ``--threads 1`` in this benchmark)."""
    from facegcn.evaluate.machine import machine_line as line

    return line()


class Baseline:
    """The baseline's ``src`` folder: an existing one, or a temporary ``git worktree`` of ``rev``."""

    def __init__(self, rev: str | None, src: str | None):
        self.worktree: Path | None = None
        if src:
            self.src = Path(src).resolve()
            self.label = f"{self.src}"
        else:
            self.worktree = Path(tempfile.mkdtemp(prefix="facegcn-baseline-")) / "tree"
            git("worktree", "add", "--detach", str(self.worktree), rev or BASELINE)
            self.src = self.worktree / "src"
            self.label = f"{git('rev-parse', '--short=10', rev or BASELINE)} (git worktree)"
        if not (self.src / "facegcn" / "__init__.py").is_file():
            raise SystemExit(f"no facegcn package under {self.src}")

    def close(self) -> None:
        if self.worktree is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(self.worktree)],
                           capture_output=True)
            shutil.rmtree(self.worktree.parent, ignore_errors=True)


def demo_photo(folder: Path) -> Path:
    """The demo photo (``skimage.data.astronaut()``, public domain) as a PNG in ``folder``."""
    from PIL import Image
    from skimage import data

    p = folder / "astronaut.png"
    Image.fromarray(data.astronaut()).save(p)
    return p


def run(cmd: list[str], env: dict, timeout: float) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        rc, err = p.returncode, (p.stderr or p.stdout)[-600:]
    except subprocess.TimeoutExpired:
        rc, err = 124, f"timed out after {timeout:.0f} s"
    return time.perf_counter() - t0, rc, err


def report(out: Path) -> dict:
    found = sorted(out.rglob("report.json"))
    if not found:
        return {}
    d = json.loads(found[0].read_text())
    return {"timings": d.get("timings", {}), "metrics": d.get("metrics", {})}


def _env(src: Path, cache: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(src), FACEGCN_CACHE=str(cache), PYTHONUNBUFFERED="1")


def compare(src_new: Path, src_old: Path, photo: Path, runs: int, work: Path, timeout: float, log=print) -> dict:
    """Alternating whole-command runs of both sides; medians, pairwise ratios, stages, quality."""
    cache = work / "cache"
    sides = {"new": src_new, "baseline": src_old}
    cmd = [sys.executable, "-m", "facegcn", "reconstruct", str(photo), "-q"]
    res: dict = {k: {"wall_s": [], "reports": []} for k in sides}
    for rnd in range(runs + 1):  # round 0: untimed warm-up of each side
        for name, src in sides.items():
            out = work / f"{name}-{rnd}"
            wall, rc, err = run(cmd + ["-o", str(out)], _env(src, cache), timeout)
            if rc != 0:
                raise SystemExit(f"{name} run failed (exit {rc}): {err}")
            if rnd:
                res[name]["wall_s"].append(wall)
                res[name]["reports"].append(report(out))
            log(f"  {'warm-up' if not rnd else f'run {rnd}'} {name:8s} {wall:6.1f} s")
            shutil.rmtree(out, ignore_errors=True)
    for d in res.values():
        d["median_s"] = statistics.median(d["wall_s"])
        d["stages_s"] = {k: statistics.median(r["timings"].get(k, float("nan")) for r in d["reports"]) for k in STAGES}
        d["stages_s"]["start_write_s"] = d["median_s"] - d["stages_s"]["total_s"]
        d["quality"] = {k: d["reports"][-1]["metrics"].get(k) for k in QUALITY}
        del d["reports"]
    pairs = [a / b for a, b in zip(res["new"]["wall_s"], res["baseline"]["wall_s"])]
    res["ratio"] = statistics.median(pairs)
    res["ratio_of_medians"] = res["new"]["median_s"] / res["baseline"]["median_s"]
    return res


def batch(src: Path, photo: Path, n: int, work: Path, timeout: float, workers: int = 2) -> dict:
    """``facegcn batch FOLDER --workers 2`` on ``n`` copies of the photo: photos per minute."""
    folder = work / "batch-in"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        dst = folder / f"photo_{i:02d}.png"
        if not dst.exists():
            shutil.copy(photo, dst)
    out = work / f"batch-out-{src.parent.name}"
    cmd = [sys.executable, "-m", "facegcn", "batch", str(folder), "-o", str(out), "--workers", str(workers), "-q"]
    wall, rc, err = run(cmd, _env(src, work / "cache"), timeout)
    done = len(list(out.rglob("report.json")))
    shutil.rmtree(out, ignore_errors=True)
    return {"photos": n, "done": done, "workers": workers, "wall_s": wall, "rc": rc,
            "photos_per_min": done / wall * 60.0 if wall > 0 else 0.0, "error": err if rc else ""}


def format_compare(res: dict, baseline_label: str) -> list[str]:
    n, b = res["new"], res["baseline"]
    lines = [f"whole command `facegcn reconstruct` (demo photo, {len(n['wall_s'])} alternating runs each):",
             f"  {'stage [s, median]':22s} {'new':>8s} {'baseline':>9s} {'new/base':>9s}"]
    for k in (*STAGES[:-1], "start_write_s", "total_s"):
        label = {"start_write_s": "start-up + init + write", "total_s": "reconstruct (in-process)"}.get(k, k[:-2])
        a, c = n["stages_s"].get(k, float("nan")), b["stages_s"].get(k, float("nan"))
        lines.append(f"  {label:22s} {a:8.2f} {c:9.2f} {a / c if c else float('nan'):9.2f}")
    lines.append(f"  {'whole process (wall)':22s} {n['median_s']:8.2f} {b['median_s']:9.2f} {res['ratio']:9.2f}"
                 f"   (pairwise median; ratio of medians {res['ratio_of_medians']:.2f})")
    lines.append("  quality (report.json)      new       baseline")
    for k in QUALITY:
        a, c = n["quality"].get(k), b["quality"].get(k)
        fa = "—" if a is None else f"{a:.4f}"
        fc = "—" if c is None else f"{c:.4f}"
        lines.append(f"    {k:26s} {fa:>9s} {fc:>9s}")
    lines.append(f"  baseline: {baseline_label}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the baseline (a temporary worktree)")
    ap.add_argument("--baseline-src", default=None, help="use this checkout's src folder as the baseline instead")
    ap.add_argument("--photo", default=None, help="photo to reconstruct (default: the demo photo)")
    ap.add_argument("--batch-photos", type=int, default=4)
    ap.add_argument("--no-batch", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    print(machine_line(), flush=True)
    base = Baseline(args.baseline, args.baseline_src)
    work = Path(tempfile.mkdtemp(prefix="facegcn-bench-"))
    try:
        photo = Path(args.photo) if args.photo else demo_photo(work)
        res = compare(REPO / "src", base.src, photo, args.runs, work, args.timeout)
        print("\n".join(format_compare(res, base.label)), flush=True)
        if not args.no_batch:
            res["batch"] = {}
            for name, src in (("new", REPO / "src"), ("baseline", base.src)):
                res["batch"][name] = b = batch(src, photo, args.batch_photos, work, args.timeout)
                print(f"batch --workers {b['workers']} ({name}): {b['done']}/{b['photos']} photos in {b['wall_s']:.1f} s "
                      f"= {b['photos_per_min']:.2f} photos/min" + (f" [exit {b['rc']}: {b['error'][-200:]}]" if b["rc"] else ""),
                      flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
        print(f"whole command (facegcn reconstruct, demo photo): {res['new']['median_s']:.1f} s vs baseline "
              f"{res['baseline']['median_s']:.1f} s = ratio {res['ratio']:.2f} (target <= 0.3)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        base.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
