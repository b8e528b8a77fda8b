"""Spike-train classification: a compiled exact pattern detector vs a trained LIF network.

Same as ``membra construct classify``; see docs/construct.md. Run:
    python examples/construct_classify.py
"""

from membra.construct.classify import run_demo

if __name__ == "__main__":
    for r in run_demo(log=print):
        print(f"{r.name:32s} acc {100 * r.accuracy:6.2f}%  weights/params {r.n_params:5d}  "
              f"neurons {r.neurons:3d}  spikes/train {r.spikes_per_train:7.1f}  "
              f"acc after one weight +-1%: mean {100 * r.perturbed_mean:6.2f}% "
              f"min {100 * r.perturbed_min:6.2f}%")
