"""`membra bench` / `make bench` run end to end on a tiny size (timings are never asserted)."""

from __future__ import annotations

import json
import time

import pytest
from kernel_cases import fused_backends
from typer.testing import CliRunner

from membra.bench.run import main
from membra.cli import app


def _check(out, T):
    data = json.loads((out / "kernels.json").read_text())
    row = data["neuron"]["cpu"]["by_T"][str(T)]
    assert "membra-reference" in row["methods"]
    assert row["limits"]["copy_x3"]["median_ms"] > 0
    md = (out / "kernels.md").read_text()
    assert "forward + backward" in md and f"T={T}" in md
    if "membra-cpu" in row["methods"]:  # a user's surrogate against the built-in, same run
        assert "membra-cpu-custom-surrogate" in row["methods"]
        ratio = data["neuron"]["cpu"]["custom_surrogate_ratio"]["membra-cpu-custom-surrogate"]
        assert ratio[str(T)] > 0
        assert "Custom surrogate over built-in" in md


def test_bench_writes_json_and_markdown(tmp_path):
    main(["--steps", "2", "--neurons", "64", "--repeats", "1", "--no-compile", "--no-conv",
          "--out", str(tmp_path)])
    _check(tmp_path, 2)
    data = json.loads((tmp_path / "kernels.json").read_text())
    md = (tmp_path / "kernels.md").read_text()
    # every target of the issue is a row, measured or said not to be
    whats = [t["what"] for t in data["targets"]]
    assert len(whats) == 6 and "Targets (same-run ratios)" in md
    assert any("three-copy limit" in w for w in whats)
    assert any("conv SNN" in w for w in whats)
    assert "not measured" in md  # no conv step and no peers in this run
    if "membra-cpu" in data["neuron"]["cpu"]["by_T"]["2"]["methods"]:
        plain = data["plain"]
        assert plain["membra-cpu"]["fwd_bwd"]["median_ms"] > 0
        assert plain["membra-cpu-infer-bool"]["fwd"]["median_ms"] > 0
        assert "Plain script (no reuse of freed memory)" in md
        # where the time goes: the C++ kernels alone, next to the op's fwd+bwd
        assert all(plain["kernel_only"][ph]["median_ms"] > 0 for ph in ("fwd", "bwd"))
        assert md.count("| cpu kernel alone, preallocated |") == 2
        met = {t["what"]: t for t in data["targets"]}
        assert all(t["value"] is not None for w, t in met.items() if "plain script: three" in w)


def test_bench_is_bounded(tmp_path):
    from membra.bench.neurons import run_neuron_bench
    from membra.bench.timing import median_ms

    res = run_neuron_bench(steps=(3,), shape=(2, 8), repeats=1, compile_reference=True,
                           compile_max_t=2, log=lambda *_: None)
    row = res["by_T"]["3"]["methods"]
    assert "T > 2" in row["compile-reference"]["skipped"]
    assert res["bounds"]["compile_max_t"] == 2
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.05)

    r = median_ms(slow, warmup=2, repeats=5, budget_s=0.1)
    assert "capped" in r and len(r["times_ms"]) == 1 and len(calls) == 2
    r = median_ms(lambda: None, warmup=2, repeats=5, budget_s=0.1)
    assert "capped" not in r and len(r["times_ms"]) == 5


def test_membra_bench_cli(tmp_path):
    r = CliRunner().invoke(app, ["bench", "--steps", "3", "--neurons", "32", "--repeats", "1",
                                 "--no-compile", "--no-conv", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    _check(tmp_path, 3)


@pytest.mark.parametrize("devices, why", [("gpu", "unknown ['gpu']"),
                                          ("cpu,tpu", "unknown ['tpu']")])
def test_membra_bench_bad_devices(tmp_path, devices, why):
    r = CliRunner().invoke(app, ["bench", "--devices", devices, "--out", str(tmp_path)])
    assert r.exit_code == 2 and why in r.output
    assert not (tmp_path / "kernels.json").exists()


def test_membra_bench_cuda_without_a_gpu_says_so(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = CliRunner().invoke(app, ["bench", "--devices", "cuda", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "no CUDA device" in r.output
    for devices in (["cuda"], ["cpu", "tpu"]):  # python -m membra.bench.run refuses them too
        with pytest.raises(SystemExit):
            main(["--devices", *devices, "--out", str(tmp_path)])
    assert not (tmp_path / "kernels.json").exists()


def test_bench_on_the_named_devices_only(tmp_path):
    r = CliRunner().invoke(app, ["bench", "--devices", "cpu", "--steps", "2", "--neurons", "32",
                                 "--repeats", "1", "--no-compile", "--no-conv",
                                 "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "kernels.json").read_text())
    assert list(data["neuron"]) == ["cpu"] and "gpu" not in data["env"]


def test_membra_bench_bad_steps(tmp_path):
    r = CliRunner().invoke(app, ["bench", "--steps", "4,x", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--steps" in r.output
    assert not (tmp_path / "kernels.json").exists()


def test_rewrite_renders_the_tables_again(tmp_path):
    main(["--steps", "2", "--neurons", "32", "--repeats", "1", "--no-compile", "--no-conv",
          "--no-plain", "--out", str(tmp_path)])
    (tmp_path / "kernels.md").unlink()
    (tmp_path / "speed_table.md").unlink()
    main(["--rewrite", "--out", str(tmp_path)])
    table = (tmp_path / "speed_table.md").read_text()
    assert "| measured | target | value | met |" in table and "load average" in table
    assert "forward + backward" in (tmp_path / "kernels.md").read_text()


@pytest.mark.slow  # compiles the custom surrogate's derivative (seconds)
def test_the_custom_surrogate_compile_does_not_cap_its_timing(monkeypatch):
    # the compile is a once-per-process cost, paid before timing: not the slow first call that
    # caps a method's repeats (it capped the T = 4 row of `make bench`)
    from membra.bench import neurons
    from membra.functional import surrogate_compiled as sc

    if "cpu" not in fused_backends("cpu"):
        pytest.skip("cpu kernels not built")
    monkeypatch.setattr(sc, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(sc, "_ENTRIES", type(sc._ENTRIES)())  # nothing compiled yet
    res = neurons.run_neuron_bench(steps=(3,), shape=(4, 33), repeats=3, budget_s=0.5,
                                   compile_reference=False, only=["membra-cpu-custom-surrogate"],
                                   log=lambda *_: None)
    row = res["by_T"]["3"]["methods"]["membra-cpu-custom-surrogate"]
    compiled = sc._entries(neurons._custom_sigmoid)
    assert compiled and all(fn is not None for fn in compiled.values()), compiled
    assert "capped" not in row["fwd_bwd"] and len(row["fwd_bwd"]["times_ms"]) == 3, row


def test_small_input_bench_reports_both_paths():
    from membra.bench.small import measure

    out = measure(3)
    for name in ("lif_sequence_5x1x256", "popsan_actor_forward", "lif_fwd_bwd_4x1x16",
                 "rlif_fwd_bwd_16x8x64"):
        assert out[f"{name}_us"] > 0 and out[f"{name}_via_op_us"] > 0
    from membra.kernels import direct

    assert direct.enabled()  # the op path was only borrowed


def test_membra_bench_only_and_plain(tmp_path):
    """`--only` (comma-separated) times just those methods and skips the conv step and the
    plain script; `--no-plain` skips the plain script of a full run; an unknown method is named
    with the choices, no traceback."""
    base = ["bench", "--steps", "2", "--neurons", "32", "--repeats", "1", "--no-compile",
            "--devices", "cpu"]
    r = CliRunner().invoke(app, [*base, "--only", "membra-cpu,membra-reference",
                                 "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "a" / "kernels.json").read_text())
    methods = data["neuron"]["cpu"]["by_T"]["2"]["methods"]
    assert sorted(methods) == ["membra-cpu", "membra-reference"]
    assert "plain" not in data and "conv" not in data
    r = CliRunner().invoke(app, [*base, "--no-plain", "--no-conv", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "plain" not in json.loads((tmp_path / "b" / "kernels.json").read_text())
    r = CliRunner().invoke(app, [*base, "--only", "membra-cpu,fast", "--out",
                                 str(tmp_path / "c")])
    assert r.exit_code == 2 and "no method ['fast']" in r.output and "membra-cpu" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not (tmp_path / "c" / "kernels.json").exists()
