"""facegcn.io.atomic: never a torn file, even under SIGKILL; no temporary files after a write that
finished (successfully or not); full disk, read-only location, a parent that is a file, long names."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facegcn.errors import OutputError
from facegcn.io.atomic import atomic_open, atomic_write_bytes, atomic_write_text, is_temp_name
from tests.reliability.atomic_rewriter import check, content

REWRITER = Path(__file__).with_name("atomic_rewriter.py")
REPO = Path(__file__).resolve().parents[2]
SIZE = 4 << 20  # 4 MiB: a write takes many syscalls, so a kill often lands in the middle of one


def _start(path: Path, gen: int, naive: bool = False) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, str(REWRITER), str(path), str(SIZE), str(gen)] + (["naive"] if naive else [])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    line = p.stdout.readline()
    assert line.strip() == b"ready", f"rewriter did not start: {line!r} {p.stderr.read()!r}"
    return p


def _kill_rounds(path: Path, rounds: int, naive: bool, rng: random.Random, until_torn: bool = False) -> list:
    """Start a rewriter, SIGKILL it at a random moment, read the file; ``rounds`` times (with
    ``until_torn``: at most ``rounds`` times, stopping at the first torn file)."""
    observed = []
    gen = 0
    for _ in range(rounds):
        p = _start(path, gen, naive)
        time.sleep(rng.uniform(0.0, 0.25))
        p.send_signal(signal.SIGKILL)
        p.wait(30)
        p.stdout.close()
        p.stderr.close()
        data = path.read_bytes()
        try:
            g = check(data)
            observed.append(g)
            gen = g + 1
        except ValueError as exc:
            observed.append(exc)
            gen += 1000
            if until_torn:
                break
    return observed


def test_sigkill_never_leaves_a_torn_file(tmp_path):
    target = tmp_path / "big.bin"
    rng = random.Random(1234)
    observed = _kill_rounds(target, 12, naive=False, rng=rng)
    torn = [o for o in observed if isinstance(o, Exception)]
    assert not torn, f"torn files after SIGKILL: {torn}"
    assert observed == sorted(observed), observed  # generations only move forward
    assert observed[-1] >= 12  # each round wrote at least its first generation
    # a killed writer may leave its temporary file; nothing else may appear
    others = [p.name for p in tmp_path.iterdir() if p.name != "big.bin" and not is_temp_name(p.name, "big.bin")]
    assert not others, others
    # and some kills did land inside a write (a temporary file was left), or the test proved little
    assert any(is_temp_name(p.name, "big.bin") for p in tmp_path.iterdir())


def test_the_kill_test_detects_torn_files(tmp_path):
    """Control: the same harness with a writer that rewrites in place sees torn files. Kills are
    random, and on a busy machine a few may all land between two writes (4 rounds once saw none
    in a full parallel run): up to 40 rounds, stopping at the first torn file."""
    observed = _kill_rounds(tmp_path / "big.bin", 40, naive=True, rng=random.Random(99), until_torn=True)
    assert any(isinstance(o, Exception) for o in observed), observed


def _only(folder: Path, *names: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_no_temporary_files_left_behind(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00" * 1000)
    _only(tmp_path, "a.json", "b.bin")
    assert p.read_text() == "two"
    with pytest.raises(RuntimeError):  # the body fails: old content stays, temp file removed
        with atomic_open(p, "w", encoding="utf-8") as fh:
            fh.write("three, half written")
            raise RuntimeError("boom")
    assert p.read_text() == "two"
    _only(tmp_path, "a.json", "b.bin")


def test_permissions_of_an_existing_file_are_kept(tmp_path):
    p = tmp_path / "secret.json"
    atomic_write_text(p, "1")
    os.chmod(p, 0o600)
    atomic_write_text(p, "2")
    assert (p.stat().st_mode & 0o777) == 0o600 and p.read_text() == "2"


def _raiser(err: int):
    def f(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    return f


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_full_disk(tmp_path, monkeypatch, where):
    p = tmp_path / "out.bin"
    atomic_write_bytes(p, b"old")
    if where == "write":  # the file system fills up in the middle of the data
        real_fdopen = os.fdopen

        class Full:
            def __init__(self, fh):
                self.fh, self.n = fh, 0

            def write(self, b):
                self.n += len(b)
                if self.n > 10:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return self.fh.write(b)

            def __getattr__(self, k):
                return getattr(self.fh, k)

            def __enter__(self):
                return self

            def __exit__(self, *a):
                return self.fh.__exit__(*a)

        monkeypatch.setattr(os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    elif where == "fsync":
        monkeypatch.setattr(os, "fsync", _raiser(errno.ENOSPC))
    else:
        monkeypatch.setattr(os, "replace", _raiser(errno.ENOSPC))
    with pytest.raises(OutputError, match="no space left") as e:
        atomic_write_bytes(p, b"new content that does not fit")
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    monkeypatch.undo()
    assert p.read_bytes() == b"old"
    _only(tmp_path, "out.bin")


def test_read_only_location(tmp_path, monkeypatch):
    p = tmp_path / "out.bin"
    atomic_write_bytes(p, b"old")
    monkeypatch.setattr(os, "replace", _raiser(errno.EROFS))
    with pytest.raises(OutputError, match="read-only") as e:
        atomic_write_bytes(p, b"new")
    assert str(p) in str(e.value)
    monkeypatch.undo()
    assert p.read_bytes() == b"old"
    _only(tmp_path, "out.bin")
    # a read-only directory where the temporary file cannot even be created (EACCES from mkstemp)
    import tempfile

    monkeypatch.setattr(tempfile, "mkstemp", _raiser(errno.EACCES))
    with pytest.raises(OutputError, match="permission denied"):
        atomic_write_bytes(tmp_path / "other.bin", b"x")


def test_parent_is_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("I am a file")
    for target in (f / "out.json", f / "sub" / "deeper" / "out.json"):
        with pytest.raises(OutputError, match="is a file, not a directory") as e:
            atomic_write_text(target, "{}")
        assert str(target) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(OutputError, match="is a directory"):
        atomic_write_text(tmp_path, "{}")
    assert f.read_text() == "I am a file"


def test_long_and_non_utf8_names(tmp_path):
    long_name = "n" * 250 + ".json"  # 255 bytes: the longest name ext4 allows
    atomic_write_text(tmp_path / long_name, "{}")
    assert (tmp_path / long_name).read_text() == "{}"
    odd = os.fsdecode(b"caf\xe9-\xff\xfe.json")  # not UTF-8: surrogate escapes
    atomic_write_text(tmp_path / odd, "{}")
    assert os.fsencode(odd) in os.listdir(os.fsencode(tmp_path))
    _only(tmp_path, long_name, odd)
    with pytest.raises(OutputError, match="too long"):
        atomic_write_text(tmp_path / ("n" * 256), "{}")


def test_rewriter_content_check():
    good = content(7, 1000)
    assert check(good) == 7
    for bad in (good[:500], good[:-1], good[:100] + b"\x00" * 900, b"", content(8, 1000)[:60] + good[60:]):
        with pytest.raises(ValueError):
            check(bad)
