"""The machine line printed beside every figure: CPU, cores, threads, GPU and the commit."""

import subprocess

from facegcn.evaluate.machine import commit_line, machine_info, machine_line


def test_machine_line_names_the_machine_and_commit():
    m = machine_info()
    line = machine_line(m)
    assert m["cpu"] in line and f"{m['cores']} cores" in line and "GPU:" in line
    assert f"torch {m['torch']} ({m['torch_threads']} threads)" in line
    assert m["commit"] in line


def test_commit_line(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEGCN_COMMIT", raising=False)
    assert commit_line(tmp_path) == "unknown (not a git checkout)"
    monkeypatch.setenv("FACEGCN_COMMIT", "abc1234")  # a copied tree says where it came from
    assert commit_line(tmp_path) == "abc1234 (FACEGCN_COMMIT: a copy of that commit)"
    monkeypatch.delenv("FACEGCN_COMMIT")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("a")
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *env, "-C", str(tmp_path), "add", "f.txt"], check=True)
    subprocess.run(["git", *env, "-C", str(tmp_path), "commit", "-qm", "first subject"], check=True)
    sha = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert commit_line(tmp_path) == f"{sha} (first subject)"
    (tmp_path / "f.txt").write_text("b")
    assert commit_line(tmp_path).endswith("+ uncommitted changes")
    monkeypatch.setenv("FACEGCN_COMMIT", "abc1234")  # takes precedence over a (possibly stale) checkout
    assert commit_line(tmp_path).startswith("abc1234 ")
