"""An independent implementation of the post-hoc OOD methods, in numpy, after the papers and
OpenOOD's postprocessors, for tests/tests/methods_reference.rs to compare the runtime against.

    python3 ood_methods.py FEATURES CLASSES ASH_PERCENTILE POOLED WEIGHTS BIAS

POOLED: float32 little-endian, frames x FEATURES (each frame's pooled feature); WEIGHTS:
CLASSES x FEATURES; BIAS: CLASSES. Prints a header, then one tab-separated row of scores per
frame, computed in float64. Higher always means more in-distribution.
"""

import sys

import numpy as np

METHODS = ["MSP", "MaxLogit", "Energy", "GEN", "ASH-S", "SCALE"]
GEN_GAMMA, GEN_TOP = 0.1, 100


def logsumexp(x):
    m = x.max()
    return m + np.log(np.exp(x - m).sum())


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def gen(logits):
    """Liu et al. 2023 (OpenOOD `gen_postprocessor`): -sum over the M largest probabilities of
    p^gamma (1 - p)^gamma."""
    p = np.sort(softmax(logits))[-GEN_TOP:]
    return -np.sum(p**GEN_GAMMA * (1 - p) ** GEN_GAMMA)


def ash_s_and_scale(x, percentile):
    """Djurisic et al. 2023 (ASH-S) and Xu et al. 2024 (SCALE), as OpenOOD's `ash_s` and `scale`
    on a feature with one spatial position: keep the top n - round(n p / 100) entries; both
    multiply by exp(s1 / s2), ASH-S after pruning the rest, SCALE without."""
    n = x.size
    k = n - int(np.round(n * percentile / 100.0))
    top = np.argsort(-x, kind="stable")[:k]
    s1, s2 = x.sum(), x[top].sum()
    factor = np.exp(s1 / s2)
    ash = np.zeros_like(x)
    ash[top] = x[top] * factor
    return ash, x * factor


def main():
    features, classes, percentile = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    read = lambda path: np.fromfile(path, dtype="<f4").astype(np.float64)
    pooled = read(sys.argv[4]).reshape(-1, features)
    weights = read(sys.argv[5]).reshape(classes, features)
    bias = read(sys.argv[6])
    print("\t".join(METHODS))
    for x in pooled:
        logits = weights @ x + bias
        ash, scaled = ash_s_and_scale(x, percentile)
        row = [
            softmax(logits).max(),
            logits.max(),
            logsumexp(logits),
            gen(logits),
            logsumexp(weights @ ash + bias),
            logsumexp(weights @ scaled + bias),
        ]
        print("\t".join(f"{v:.9g}" for v in row))


if __name__ == "__main__":
    main()
