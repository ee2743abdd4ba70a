"""What a measurement ran on: CPU model, cores, memory, load, thread settings, GPU, versions and the
commit of the code — printed beside every benchmark or evaluation figure, so that no number is
quoted without its machine (the benchmarks and ``facegcn evaluate`` use these)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

__all__ = ["commit_line", "machine_info", "machine_line"]

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def commit_line(path: str | os.PathLike | None = None) -> str:
    """``<sha> (<subject>)`` of the git checkout holding ``path`` (default: this package), plus a
    note when it has uncommitted changes; ``"unknown (not a git checkout)"`` otherwise. A copied tree
    (e.g. on a lent GPU machine, whose copy may carry a stale ``.git``) names the commit it was copied
    from in ``FACEGCN_COMMIT``, which then takes precedence."""
    given = os.environ.get("FACEGCN_COMMIT", "").strip()
    if given:
        return f"{given} (FACEGCN_COMMIT: a copy of that commit)"
    where = str(Path(path) if path is not None else Path(__file__).resolve().parent)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        sha = git("rev-parse", "--short=10", "HEAD")
        subject = git("log", "-1", "--format=%s")[:60]
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{sha} ({subject}){' + uncommitted changes' if dirty else ''}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """``{"cpu", "cores", "cores_usable", "memory_gb", "load_avg", "python", "platform", "torch",
    "torch_threads", "cuda", "gpu" (when CUDA), "numba", "numba_threads", "thread_env", "commit"}``."""
    import torch

    info: dict = {"platform": platform.platform(), "python": platform.python_version(), "cpu": _cpu_model(),
                  "cores": os.cpu_count()}
    try:
        info["cores_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        info["cores_usable"] = os.cpu_count()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    try:
        info["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["cuda"] = bool(torch.cuda.is_available())
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    except ImportError:  # pragma: no cover
        pass
    info["thread_env"] = {k: os.environ[k] for k in _THREAD_VARS if k in os.environ}
    info["commit"] = commit_line()
    return info


def machine_line(m: dict | None = None) -> str:
    """One line of :func:`machine_info` (measured now when ``m`` is None)."""
    m = m or machine_info()
    load = ", ".join(f"{x:.2f}" for x in m.get("load_avg", [])) or "?"
    env = ", ".join(f"{k}={v}" for k, v in m.get("thread_env", {}).items()) or "no thread variables set"
    gpu = m.get("gpu") or "none (CUDA not available)"
    return (f"CPU: {m['cpu']}, {m['cores']} cores ({m.get('cores_usable')} usable), {m.get('memory_gb', '?')} GB RAM, "
            f"load average {load}; torch {m['torch']} ({m['torch_threads']} threads), numba {m.get('numba', '?')}; "
            f"python {m['python']}; {env}; GPU: {gpu}; commit {m.get('commit', '?')}")
