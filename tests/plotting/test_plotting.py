"""membra.plotting: facts read back from the Figure objects, not just files on disk."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

mpl = pytest.importorskip("matplotlib")

from membra import plotting  # noqa: E402
from membra.plotting import accuracy_limits  # noqa: E402


def _history(E: int, T: int, lo: float, hi: float, seed: int = 0) -> list[dict]:
    """A fake metric history: accuracies drawn in [lo, hi], rates for two layers."""
    r = np.random.default_rng(seed)
    acc = lambda n=None: r.uniform(lo, hi, n).tolist() if n else float(r.uniform(lo, hi))  # noqa: E731
    return [{"epoch": e + 1, "train_loss": 1 / (e + 1), "test_loss": 1.2 / (e + 1),
             "train_acc": acc(), "test_acc_mean": acc(), "test_acc_last": acc(),
             "test_acc_per_step": acc(T), "test_acc_cumulative": acc(T),
             "firing_rate": {"a": 0.1 * e, "b": 0.2}} for e in range(E)]


# ---- the one import boundary --------------------------------------------------------------
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize("call", [
    "plotting.curves_figure([])",
    "plotting.raster_figure({'a': (s, s, s)})",
    "plotting.init_potential_figure({'a': s})",
    "plotting.naive_curve_figure([])",
    "__import__('membra.train.plots', fromlist=['x']).write_run_plots('.', [])",
])
def test_missing_matplotlib_is_one_clear_error(call):
    code = BLOCK + textwrap.dedent(f"""
        import torch
        from membra import plotting   # importing needs no matplotlib
        s = torch.zeros(2, 1, 3)
        print(plotting.dead_saturated({{'a': (s, s, s)}}))   # nor do the statistics
        try:
            {call}
        except ImportError as e:
            print("ERR", e)
        """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "{'a': (1.0, 0.0)}" in res.stdout
    assert "ERR membra's plots need matplotlib: pip install 'membra[plot]'" in res.stdout


def test_plotting_leaves_backend_and_pyplot_alone(tmp_path):
    code = textwrap.dedent(f"""
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        plt.figure()
        before = (matplotlib.get_backend(), plt.get_fignums())
        import membra.plotting as P, membra.train.plots, membra.experiments.qcfs_pascal
        import membra.construct.plot, membra.control.sweep, membra.experiments.imp_tables
        import torch
        s = (torch.rand(3, 2, 5) > 0.5).float()
        P.save(P.raster_figure({{"a": (s, s, s)}}), r"{tmp_path / 'r.png'}")
        P.save(P.curves_figure({_history(3, 2, 0.5, 0.9)!r}), r"{tmp_path / 'c.png'}")
        print(before == (matplotlib.get_backend(), plt.get_fignums()), before)
        """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("True"), res.stdout
    assert (tmp_path / "r.png").stat().st_size > 0


def test_no_module_outside_plotting_imports_matplotlib():
    import pathlib

    import membra

    root = pathlib.Path(membra.__file__).parent
    bad = [str(p.relative_to(root)) for p in root.rglob("*.py")
           if "plotting" not in p.parts and "import matplotlib" in p.read_text()]
    assert bad == []
    for p in (root / "plotting").rglob("*.py"):  # code, not docstrings: walk the syntax
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any("pyplot" in n for n in names), p
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("use", "pyplot"), (p, node.lineno)


# ---- axis rules ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(12))
def test_accuracy_limits_contain_data_and_zoom(seed):
    r = np.random.default_rng(seed)
    lo = r.uniform(0, 99)
    vals = r.uniform(lo, min(100, lo + r.choice([0.0, 0.5, 3, 30])), r.integers(1, 9))
    a, b = accuracy_limits(list(vals) + [float("nan")])
    assert 0 <= a <= vals.min() and vals.max() <= b <= 100
    span = vals.max() - vals.min()
    assert b - a <= span + 2 * max(0.1 * span, 1.0) + 1e-9
    assert b - a > span  # data never touches the frame unless clamped at 0 or 100
    assert accuracy_limits([]) == (0.0, 100.0)


@pytest.mark.parametrize("E", [1, 2, 3, 7, 13, 40])
@pytest.mark.parametrize("band", [(0.90, 0.99), (0.1, 0.95)])
def test_curves_have_integer_epochs_and_zoomed_accuracy(E, band):
    h = _history(E, 4, *band, seed=E)
    fig = plotting.curves_figure(h)
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    acc_ax = fig.axes[1]
    ys = np.concatenate([ln.get_ydata() for ln in acc_ax.get_lines()])
    lo, hi = acc_ax.get_ylim()
    assert lo <= ys.min() and ys.max() <= hi
    if band == (0.90, 0.99):
        assert lo >= 85 and hi <= 100  # narrow data, narrow axis
    fr = plotting.firing_rate_figure(h)
    fr.canvas.draw()
    ax = fr.axes[0]
    assert all(float(t).is_integer() for t in ax.get_xticks())


@pytest.mark.parametrize("E", [1, 2, 6, 9])
@pytest.mark.parametrize("classes", [None, 2, 10, 7])
def test_per_step_chance_line_and_faint_first_epochs(E, classes):
    T = 3 + E % 4
    h = _history(E, T, 0.3, 0.9, seed=E)
    ax = plotting.per_step_figure(h, classes).axes[0]
    lines = ax.get_lines()
    faint = [ln for ln in lines if (ln.get_alpha() or 1) < 1]
    assert len(faint) == min(plotting.run.FAINT_EPOCHS, E - 1)
    for ln, m in zip(faint, h, strict=False):  # the first epochs, in order
        np.testing.assert_allclose(ln.get_ydata(), 100 * np.array(m["test_acc_per_step"]))
    flat = [ln for ln in lines if len(set(ln.get_ydata())) == 1 and len(ln.get_ydata()) == 2
            and ln.get_xdata()[0] == 0 and ln.get_xdata()[1] == 1]  # axhline
    if classes is None:
        assert flat == []
    else:
        assert len(flat) == 1 and flat[0].get_ydata()[0] == pytest.approx(100 / classes)
        lo, hi = ax.get_ylim()
        assert lo <= 100 / classes <= hi
    assert list(ax.get_xticks()) == list(range(1, T + 1))


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("v_th", [1.0, 0.7])
def test_init_potential_histogram_marks_band_and_threshold(layers, v_th):
    g = torch.Generator().manual_seed(layers)
    v0 = {f"l{i}": torch.rand(30 + 7 * i, generator=g) for i in range(layers)}
    fig = plotting.init_potential_figure(v0, v_th=v_th, init_range=(0.4, 0.6))
    for ax, v in zip(fig.axes, v0.values(), strict=True):
        spans = [p for p in ax.patches if p.get_label().startswith("init U")]
        assert len(spans) == 1
        box = spans[0].get_window_extent().transformed(ax.transData.inverted())
        assert (box.x0, box.x1) == pytest.approx((0.4, 0.6))
        vlines = {ln.get_label(): ln.get_xdata()[0] for ln in ax.get_lines()}
        assert vlines[f"threshold {v_th:g}"] == pytest.approx(v_th)
        bars = [p for p in ax.patches if p not in spans]
        assert sum(p.get_height() for p in bars) == len(v)  # every neuron counted


# ---- trace plots ---------------------------------------------------------------------------
def _traces(seed: int, shapes: dict, T: int, B: int):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, S in shapes.items():
        s = (torch.rand(T, B, *S, generator=g) < 0.3).float()
        flat = s.view(T, B, -1)
        n = flat.shape[-1]
        flat[:, :, 0] = 0.0               # neuron 0 dead
        if n > 1:
            flat[:, :, 1] = 1.0           # neuron 1 saturated
        if n > 2:
            flat[0, 0, 2] = 1.0           # neuron 2 fires at least once
            flat[:, :, 2][flat[:, :, 2].sum() == T * B] = 0  # and not always
            flat[1 % T, B - 1, 2] = 0.0 if T * B > 1 else 1.0
        v = torch.randn(T, B, *S, generator=g)
        out[name] = (s, v, v + s)
    return out


CASES = [(0, {"fc": (5,)}, 1, 1), (1, {"conv": (2, 3, 3), "fc": (7,)}, 4, 3),
         (2, {"a": (1,), "b": (13,), "c": (3, 2)}, 6, 5)]


def _dead_sat_reference(s: torch.Tensor) -> tuple[float, float]:
    per = s.reshape(s.shape[0], s.shape[1], -1)
    n = per.shape[-1]
    dead = sum(int(per[:, :, k].sum() == 0) for k in range(n)) / n
    sat = sum(int(per[:, :, k].min() == 1) for k in range(n)) / n
    return dead, sat


@pytest.mark.parametrize("seed,shapes,T,B", CASES)
def test_dead_saturated_fractions_and_bars(seed, shapes, T, B):
    tr = _traces(seed, shapes, T, B)
    got = plotting.dead_saturated(tr)
    for name, (s, _, _) in tr.items():
        assert got[name] == pytest.approx(_dead_sat_reference(s))
    ax = plotting.dead_saturated_figure(tr).axes[0]
    heights = [p.get_height() for p in ax.patches]
    L = len(tr)
    assert heights[:L] == pytest.approx([100 * d for d, _ in got.values()])
    assert heights[L:] == pytest.approx([100 * s for _, s in got.values()])


def test_dead_saturated_hand_made():
    s = torch.tensor([[[0, 1, 1, 0]], [[0, 1, 0, 0]], [[0, 1, 1, 0]]], dtype=torch.float)
    assert plotting.dead_saturated({"x": (s, s, s)}) == {"x": (0.5, 0.25)}


@pytest.mark.parametrize("seed,shapes,T,B", CASES)
def test_rate_heatmap_shows_the_rates(seed, shapes, T, B):
    tr = _traces(seed, shapes, T, B)
    names, R = plotting.rate_matrix(tr)
    ref = np.stack([s.reshape(T, B, -1).mean(dim=(1, 2)).numpy() for s, _, _ in tr.values()])
    np.testing.assert_allclose(R, ref)
    ax = plotting.rate_heatmap_figure(tr).axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), ref)
    assert [t.get_text() for t in ax.get_yticklabels()] == names == list(shapes)


@pytest.mark.parametrize("seed,shapes,T,B", CASES)
@pytest.mark.parametrize("samples,max_neurons", [(1, None), (4, 3), (2, 256)])
def test_raster_has_one_point_per_spike(seed, shapes, T, B, samples, max_neurons):
    tr = _traces(seed, shapes, T, B)
    fig = plotting.raster_figure(tr, samples=samples, max_neurons=max_neurons)
    k = min(samples, B)
    assert len(fig.axes) == len(tr) * k
    for i, (s, _, _) in enumerate(tr.values()):
        flat = s.reshape(T, B, -1)
        n = flat.shape[-1] if max_neurons is None else min(max_neurons, flat.shape[-1])
        for b in range(k):
            pts = fig.axes[i * k + b].collections[0].get_offsets()
            assert len(pts) == int(flat[:, b, :n].sum())
            t, j = np.nonzero(flat[:, b, :n].numpy())
            assert sorted(map(tuple, np.asarray(pts))) == sorted(zip(t + 1, j, strict=True))


@pytest.mark.parametrize("seed,shapes,T,B", CASES)
@pytest.mark.parametrize("per_neuron_v0", [False, True])
def test_potential_traces_mark_threshold_and_initial_potential(seed, shapes, T, B,
                                                              per_neuron_v0):
    tr = _traces(seed, shapes, T, B)
    g = torch.Generator().manual_seed(seed)
    v0 = {k: (torch.rand(1, *S, generator=g) if per_neuron_v0 else 0.25)
          for k, S in shapes.items()}
    v_th = {k: 0.5 + i for i, k in enumerate(shapes)}
    fig = plotting.potential_figure(tr, v_th=v_th, v0=v0, neurons=3)
    for ax, (name, (s, v, _)) in zip(fig.axes, tr.items(), strict=True):
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        th = lines[f"threshold {v_th[name]:g}"]
        assert set(th.get_ydata()) == {v_th[name]}
        marks = lines["initial potential V0"]
        assert set(marks.get_xdata()) == {0}
        start = np.broadcast_to(np.asarray(v0[name], dtype=float).reshape(-1),
                                (s[0, 0].numel(),))
        paths = [ln for lbl, ln in lines.items() if lbl.startswith("neuron ")]
        for ln, y0 in zip(paths, marks.get_ydata(), strict=True):
            n = int(ln.get_label().split()[1])
            assert ln.get_ydata()[0] == pytest.approx(y0) == pytest.approx(start[n])
            np.testing.assert_allclose(ln.get_ydata()[1:], v[:, 0].reshape(T, -1)[:, n])


@pytest.mark.parametrize("bad", [
    {"a": (torch.zeros(2, 1, 3), torch.zeros(2, 1, 4), torch.zeros(2, 1, 3))},
    {"a": (torch.zeros(2, 3),) * 3},
    {"a": (torch.zeros(2, 1, 3),) * 2},
    {},
])
def test_bad_traces_name_the_problem(bad):
    with pytest.raises(ValueError, match="trace|traces"):
        plotting.rate_matrix(bad)
