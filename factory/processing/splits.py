"""Train / validation / test splits by seed; held-out test samples are computed, never interpolated."""

from __future__ import annotations

import math

import numpy as np

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VALIDATION: "validation", TEST: "test"}


def check_fractions(fractions) -> tuple[float, float, float]:
    """(train, validation, test) as floats, or a ValueError: three finite numbers >= 0 summing to 1."""
    try:
        f = tuple(float(x) for x in fractions)
    except (TypeError, ValueError):
        f = ()
    if len(f) != 3 or not all(math.isfinite(x) and x >= 0 for x in f) or abs(sum(f) - 1.0) > 1e-9:
        shown = list(fractions) if isinstance(fractions, (list, tuple)) else fractions
        raise ValueError(f"split fractions {shown} must be three finite numbers >= 0 summing to 1 "
                         "(train, validation, test), e.g. 0.8,0.1,0.1")
    return f


def assign_splits(
    n: int, fractions: tuple[float, float, float], seed: int, computed: np.ndarray | None = None
) -> np.ndarray:
    """int8 split code per sample from a seeded permutation.

    ``computed`` (bool, per sample) marks samples that were simulated rather than
    interpolated; only those may enter the test split, and the test fraction is taken of them.
    """
    f = np.asarray(check_fractions(fractions), dtype=np.float64)
    computed = np.ones(n, dtype=bool) if computed is None else np.asarray(computed, dtype=bool)
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(0x5B117,)))
    split = np.full(n, TRAIN, dtype=np.int8)
    cand = rng.permutation(np.flatnonzero(computed))
    n_test = int(round(f[2] * len(cand)))
    split[cand[:n_test]] = TEST
    rest = rng.permutation(np.flatnonzero(split != TEST))
    n_val = int(round(f[1] / max(f[0] + f[1], 1e-12) * len(rest))) if f[0] + f[1] > 0 else 0
    split[rest[:n_val]] = VALIDATION
    return split
