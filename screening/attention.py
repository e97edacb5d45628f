"""The classifier's optional attention output: where its cross-attention queries looked in the image.

A bundle whose fusion classifier uses cross-attention may export, beside ``logits``, an output
``attention`` of shape (N, Q, h, w): for each of the Q queries named in the manifest's
``attention_queries`` (e.g. ``["meta", "mask"]``), the attention weights over the h x w image
feature positions, averaged over heads. Each map is a distribution (non-negative, sums to 1).
It shows where a query looked, not why the model decided what it decided. Bundles without it
screen the same and their reports simply show no map.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ATTENTION_OUTPUT = "attention"
# Human names of the queries the training code exports, for the report.
QUERY_LABELS = {"meta": "metadata query", "mask": "lesion-mask query"}


def problems(queries: Any, classifier_outputs: dict[str, list[Any]]) -> list[str]:
    """Why ``attention_queries`` and the classifier's ``attention`` output disagree; [] when they fit.

    Args:
        queries: the manifest's ``attention_queries`` as read (any JSON value).
        classifier_outputs: the classifier's declared outputs, name -> shape.
    """
    if not isinstance(queries, list) or not all(isinstance(q, str) and q for q in queries):
        return [f"attention_queries must be a list of query names, got {queries!r}"]
    if len(set(queries)) != len(queries):
        return [f"attention_queries {queries} names a query twice"]
    shape = classifier_outputs.get(ATTENTION_OUTPUT)
    if shape is None:
        return [] if not queries else [
            f"attention_queries {queries} given but the classifier has no {ATTENTION_OUTPUT!r} output"]
    if not queries:
        return [f"the classifier's {ATTENTION_OUTPUT!r} output needs attention_queries naming its queries"]
    fixed = shape[1:] if isinstance(shape, list) else None
    if (fixed is None or len(fixed) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in fixed)):
        return [f"classifier output {ATTENTION_OUTPUT!r} must have shape ['N', queries, h, w] "
                f"with positive integers, manifest says {shape!r}"]
    if fixed[0] != len(queries):
        return [f"classifier output {ATTENTION_OUTPUT!r} has {fixed[0]} queries but "
                f"attention_queries names {len(queries)}"]
    return []


def normalised_maps(attention: np.ndarray) -> np.ndarray:
    """(Q, h, w) attention weights -> each map scaled to 0..1 by its own maximum, for display.

    Scaling per map makes a flat map (attention spread evenly) show as uniformly warm, which is
    what it is: no position preferred.
    """
    maps = np.clip(np.asarray(attention, dtype=np.float32), 0.0, None)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)
