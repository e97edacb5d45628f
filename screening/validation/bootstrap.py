"""95 % bootstrap confidence intervals, resampling patients rather than images when ids exist.

Two images of one patient (or one lesion photographed twice) are not two independent cases:
resampling images would make the intervals too narrow. When patient ids are known, whole
patients are drawn with replacement and bring all their images; images without an id count as
their own patient. A resample is expressed as case weights (how often each case was drawn), the
form screening.validation.metrics computes on.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000
SEED = 0  # fixed, so that the same cases always give the same intervals
BLOCK = 100  # resamples per weight matrix, bounding memory at BLOCK x cases


def group_index(patient_ids: Sequence[str]) -> np.ndarray:
    """Each case's group number; a case with an empty id is a group of its own."""
    numbers: dict[str, int] = {}
    out = np.empty(len(patient_ids), dtype=np.int64)
    for i, patient in enumerate(patient_ids):
        key = patient if patient else f"\0{i}"  # never equal to a real id
        out[i] = numbers.setdefault(key, len(numbers))
    return out


def resample_weights(groups: np.ndarray, n: int, seed: int = SEED) -> Iterator[np.ndarray]:
    """Blocks of case weights (rows of up to BLOCK resamples, one column per case), ``n`` rows in all."""
    rng = np.random.default_rng(seed)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    done = 0
    while done < n and n_groups:
        rows = min(BLOCK, n - done)
        drawn = rng.integers(0, n_groups, (rows, n_groups))
        offsets = (np.arange(rows) * n_groups)[:, None]
        counts = np.bincount((drawn + offsets).ravel(), minlength=rows * n_groups).reshape(rows, n_groups)
        yield counts[:, groups].astype(np.float64)
        done += rows


def intervals(compute: Callable[[np.ndarray], dict[str, np.ndarray]], groups: np.ndarray,
              n: int = DEFAULT_RESAMPLES, seed: int = SEED) -> dict[str, tuple[float, float] | None]:
    """Percentile 95 % intervals of every figure ``compute`` returns for a block of weights.

    A figure undefined (NaN) in more than 5 % of the resamples gets no interval (None): its
    value hinges on whether a handful of cases were drawn.
    """
    draws: dict[str, list[np.ndarray]] = {}
    for weights in resample_weights(groups, n, seed):
        for name, values in compute(weights).items():
            draws.setdefault(name, []).append(values)
    out: dict[str, tuple[float, float] | None] = {}
    for name, blocks in draws.items():
        values = np.concatenate(blocks)
        values = values[~np.isnan(values)]
        if len(values) < 0.95 * n:
            out[name] = None
        else:
            low, high = np.percentile(values, [2.5, 97.5])
            out[name] = (float(low), float(high))
    return out
