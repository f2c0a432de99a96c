"""An independent implementation of the post-hoc OOD methods, in numpy, after the papers and
OpenOOD's postprocessors, for tests/tests/methods_reference.rs to compare the runtime against.

    python3 ood_methods.py FEATURES CLASSES ASH_PERCENTILE DICE_SPARSITY POOLED WEIGHTS BIAS ID_MEAN \
        VIM_DIMS ID_FRAMES

POOLED: float32 little-endian, frames x FEATURES (each frame's pooled feature); WEIGHTS:
CLASSES x FEATURES; BIAS: CLASSES; ID_MEAN: FEATURES, the ID frames' mean pooled feature DICE
sparsifies by. ViM fits its subspace of VIM_DIMS dimensions to the first ID_FRAMES frames. Prints a header, then one tab-separated row of scores per frame, computed in
float64 (DICE's contributions in float32, as the model's weights are). Higher always means more
in-distribution.
"""

import sys

import numpy as np

METHODS = ["MSP", "MaxLogit", "Energy", "GEN", "ASH-S", "SCALE", "DICE", "ViM"]
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


def dice_weights(weights, mean, sparsity):
    """Sun & Li 2022 (OpenOOD `dice_postprocessor`): keep the weights whose contribution on ID
    data, w * mean, is among the top 100 - sparsity percent (n - round(n p / 100) of them; ties
    to the lower index), zero the rest."""
    contributions = (weights * mean[None, :]).ravel()
    n = contributions.size
    k = n - int(np.round(n * sparsity / 100.0))
    keep = np.zeros(n, dtype=bool)
    keep[np.argsort(-contributions, kind="stable")[:k]] = True
    return np.where(keep, weights.ravel(), 0).reshape(weights.shape)


class Vim:
    """Wang et al. 2022 (OpenOOD `vim_postprocessor`): the origin u = -pinv(W) b; the null space
    NS, the eigenvectors of the ID features' second moment about u beyond the top `dims`;
    alpha = mean ID largest logit / mean ID |(x - u) NS|; score = logsumexp - alpha |(x - u) NS|."""

    def __init__(self, weights, bias, id_features, dims):
        self.u = -np.linalg.pinv(weights) @ bias
        centered = id_features - self.u
        moment = centered.T @ centered / len(centered)
        values, vectors = np.linalg.eigh(moment)
        self.ns = vectors[:, np.argsort(values)[::-1][dims:]]
        residual = np.linalg.norm(centered @ self.ns, axis=-1)
        top = (id_features @ weights.T + bias).max(axis=-1)
        self.alpha = top.mean() / residual.mean()

    def score(self, x, logits):
        return logsumexp(logits) - self.alpha * np.linalg.norm((x - self.u) @ self.ns)


def main():
    features, classes = int(sys.argv[1]), int(sys.argv[2])
    percentile, sparsity = float(sys.argv[3]), float(sys.argv[4])
    read32 = lambda path: np.fromfile(path, dtype="<f4")
    pooled = read32(sys.argv[5]).astype(np.float64).reshape(-1, features)
    weights32 = read32(sys.argv[6]).reshape(classes, features)
    weights = weights32.astype(np.float64)
    bias = read32(sys.argv[7]).astype(np.float64)
    dice = dice_weights(weights32, read32(sys.argv[8]), sparsity).astype(np.float64)
    vim = Vim(weights, bias, pooled[: int(sys.argv[10])], int(sys.argv[9]))
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
            logsumexp(dice @ x + bias),
            vim.score(x, logits),
        ]
        print("\t".join(f"{v:.9g}" for v in row))


if __name__ == "__main__":
    main()
