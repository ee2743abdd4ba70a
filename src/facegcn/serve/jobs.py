"""The web demo's disk: job folders (one per request) and the bounds on what the server keeps.

:class:`JobFolders` creates a folder per request under the server's job root, notes when its
results were returned (Gradio then copies them into its own cache, so the folder has been
delivered), and deletes: a delivered folder ``deliver_grace_s`` later (at once through the page's
follow-up event), any folder older than ``job_ttl_s``, the oldest finished folders beyond
``max_jobs``, and — while the temporary root (job folders, uploads, Gradio's cache) is above
``max_disk_mb`` — the oldest finished job folders, then Gradio's oldest cached files; Gradio's
files older than ``cache_ttl_s`` always. A daemon thread sweeps every ``sweep_every_s`` seconds,
and every new request sweeps first. :func:`check_port` checks a listening address before any
slow start-up.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from facegcn.errors import ConfigError


def check_port(host: str, port: int) -> None:
    """Fail fast (one line) when ``host:port`` cannot be bound: in use, not an address of this
    machine, or not allowed; before any model is loaded.

    Raises:
        ConfigError: the port or host cannot be used.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host}: unknown host ({getattr(exc, 'strerror', None) or exc})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server does
        try:
            s.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use; choose another with --port") from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise ConfigError(f"not allowed to listen on port {port} (ports below 1024 need root); "
                                  "choose another with --port") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


class JobFolders:
    """The job folders of one server.

    Args:
        jobs_root: where job folders are made.
        gradio_root: Gradio's upload and result cache (``GRADIO_TEMP_DIR``).
        opts: a :class:`~facegcn.serve.app.ServeOptions` (the bounds and periods).
    """

    def __init__(self, jobs_root: Path, gradio_root: Path, opts):
        self.root, self.gradio_root, self.opts = Path(jobs_root), Path(gradio_root), opts
        self._lock = threading.Lock()
        self._jobs: dict[str, float | None] = {}  # folder name → time its results were returned
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def new(self) -> Path:
        """A new job folder (with an empty ``out/``), after making room for it."""
        self.sweep(reserve=1)
        d = self.root / uuid.uuid4().hex
        (d / "out").mkdir(parents=True)
        with self._lock:
            self._jobs[d.name] = None
        return d

    def finished(self, job: Path) -> None:
        """Note that ``job``'s results were returned (delivery follows at once)."""
        with self._lock:
            if Path(job).name in self._jobs:
                self._jobs[Path(job).name] = time.time()

    def remove(self, job_dir) -> None:
        """Delete a job folder (only ever a folder inside the job root)."""
        if job_dir and inside(Path(job_dir), self.root) and Path(job_dir).resolve() != self.root.resolve():
            shutil.rmtree(job_dir, ignore_errors=True)
            with self._lock:
                self._jobs.pop(Path(job_dir).name, None)

    def count(self) -> int:
        """How many job folders exist now."""
        return sum(1 for d in self.root.iterdir() if d.is_dir()) if self.root.is_dir() else 0

    def sweep(self, reserve: int = 0, now: float | None = None) -> None:
        """Enforce the bounds now; ``reserve`` leaves room for that many new folders."""
        now = time.time() if now is None else now
        o = self.opts
        with self._lock:
            jobs = dict(self._jobs)
        keep = []
        for d in (p for p in (self.root.iterdir() if self.root.is_dir() else []) if p.is_dir()):
            try:
                age = now - d.stat().st_mtime
            except OSError:
                continue
            done_at = jobs.get(d.name)
            delivered = done_at is not None and now - done_at > o.deliver_grace_s
            unknown = d.name not in jobs and age > o.deliver_grace_s  # e.g. left by an earlier server
            if delivered or unknown or age > o.job_ttl_s:
                self.remove(d)
            else:
                keep.append((done_at, d))
        finished = sorted((t, str(d)) for t, d in keep if t is not None)
        excess = len(keep) - max(0, o.max_jobs - reserve)
        for _, d in finished[:max(0, excess)]:
            self.remove(d)
        self._cap_disk(now)

    def _cap_disk(self, now: float) -> None:
        limit = self.opts.max_disk_mb * 1e6
        cached = []  # Gradio's cache and uploads: <gradio root>/<hash>/<file>
        for root, _, files in os.walk(self.gradio_root):
            for f in files:
                p = Path(root) / f
                try:
                    st = p.stat()
                except OSError:
                    continue
                if now - st.st_mtime > self.opts.cache_ttl_s:
                    p.unlink(missing_ok=True)
                else:
                    cached.append((st.st_mtime, st.st_size, str(p)))
        total = sum(c[1] for c in cached) + folder_size(self.root)
        if total <= limit:
            return
        with self._lock:
            done = sorted((t, k) for k, t in self._jobs.items() if t is not None)
        for _, name in done:
            if total <= limit:
                return
            total -= folder_size(self.root / name)
            self.remove(self.root / name)
        for _, size, p in sorted(cached):
            if total <= limit:
                return
            Path(p).unlink(missing_ok=True)
            total -= size

    def start_sweeper(self) -> None:
        """Sweep every ``sweep_every_s`` seconds in a daemon thread until :meth:`stop_sweeper`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="facegcn-serve-sweeper", daemon=True)
            self._thread.start()

    def stop_sweeper(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.opts.sweep_every_s):
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - the sweeper must not die; one line in the log
                print(f"facegcn serve: sweep failed: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
