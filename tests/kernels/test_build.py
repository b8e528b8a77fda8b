"""The first-use build: concurrent first uses share one build (pytest-xdist workers, ranks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PROBE = ("import warnings; warnings.simplefilter('error'); "
         "from membra.kernels.cpu import cpu_available; print(cpu_available())")


@pytest.mark.slow
def test_two_processes_build_into_an_empty_cache(tmp_path):
    env = dict(os.environ, MEMBRA_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, "-c", PROBE], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == "True"
    builds = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert len(builds) == 1 and list(builds[0].glob("*.so"))


def test_cache_key_depends_on_the_source(tmp_path, monkeypatch):
    from membra.kernels import build

    seen = []

    def fake_load(name, sources, build_directory, **kwargs):
        seen.append(Path(build_directory).name)
        raise RuntimeError("stop before compiling")

    monkeypatch.setenv("MEMBRA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr("torch.utils.cpp_extension.load", fake_load)
    a = tmp_path / "a.cpp"
    for text in ("int a;", "int b;"):
        a.write_text(text)
        with pytest.raises(RuntimeError, match="stop before"):
            build.build_extension("probe", a)
    assert len(set(seen)) == 2 and all(s.startswith("probe-") for s in seen)


def test_cache_key_separates_checkouts_with_the_same_source(tmp_path, monkeypatch):
    # ninja rebuilds when the recorded command (which names the source path) changes, so two
    # checkouts sharing one cache must not share one build directory
    from membra.kernels import build

    seen = []

    def fake_load(name, sources, build_directory, **kwargs):
        seen.append(Path(build_directory).name)
        raise RuntimeError("stop before compiling")

    monkeypatch.setenv("MEMBRA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("torch.utils.cpp_extension.load", fake_load)
    for checkout in ("one", "two", "one"):
        src = tmp_path / checkout / "k.cpp"
        src.parent.mkdir(exist_ok=True)
        src.write_text("int a;")
        with pytest.raises(RuntimeError, match="stop before"):
            build.build_extension("probe", src)
    assert seen[0] != seen[1] and seen[0] == seen[2]
