"""Temperature scaling from saved probabilities, without the logits or the model.

A bundle's probabilities are ``softmax(logits / T0)``. Their logarithms are the logits divided
by T0, up to a per-image constant that softmax ignores, so the probabilities under any other
temperature T are ``softmax(log(p) * T0 / T)`` exactly. A clinic can therefore refit T on its
own cases from a results journal alone, and results screened with a bundle can be re-read as if
screened with its recalibrated copy (same ONNX files, new temperature).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..errors import InputError

# A probability of exactly 0 (an underflow) has no logarithm: it is taken as the smallest float.
FLOOR = float(np.finfo(np.float64).tiny)
T_RANGE = (0.05, 20.0)  # searched on a log scale; outside it the model is broken, not miscalibrated


def golden_section_minimum(loss: Callable[[float], float], low: float, high: float, tolerance: float) -> float:
    """The minimiser of a unimodal ``loss`` on [low, high], to within ``tolerance``.

    Shared by the runtime's and the training's temperature fits (both search log T).
    """
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > tolerance:
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return (low + high) / 2


def rescale(probabilities: np.ndarray, t_from: float, t_to: float) -> np.ndarray:
    """Probabilities made at temperature ``t_from`` as they would be at ``t_to``."""
    if t_from == t_to:
        return probabilities
    z = np.log(np.clip(probabilities, FLOOR, 1.0)) * (t_from / t_to)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def lowest_risk(probabilities: np.ndarray, malignant: list[int], t_from: float, t_to: float,
                stored_step: float = 1e-6) -> np.ndarray:
    """The lowest malignant risk at ``t_to`` that probabilities stored rounded to ``stored_step``
    (made at ``t_from``) can stand for.

    The risk after rescaling rises with every malignant probability and falls with every benign
    one, so the lowest lies at the corner of the rounding box: malignant ones half a step lower,
    benign ones half a step higher. Rescaling to a higher temperature magnifies the rounding of
    small probabilities (p ** (t_from / t_to)): a threshold placed on a case's nominal risk could
    lie above the risk that screening with the new temperature computes for it.
    """
    half = stored_step / 2
    low = np.array(probabilities, dtype=np.float64, copy=True)
    benign = sorted(set(range(low.shape[1])) - set(malignant))
    low[:, malignant] = np.clip(low[:, malignant] - half, FLOOR, 1.0)
    low[:, benign] = np.clip(low[:, benign] + half, FLOOR, 1.0)  # rescale normalises: no need here
    return rescale(low, t_from, t_to)[:, malignant].sum(axis=1)


def nll(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(truth)), truth], FLOOR, 1.0))))


def fit_temperature(probabilities: np.ndarray, truth: np.ndarray, t_from: float) -> float:
    """The temperature minimising the NLL of the true classes on these cases.

    Args:
        probabilities: (N, C) made at temperature ``t_from``.
        truth: (N,) true class indices.
        t_from: the temperature that made them (the bundle's).

    Raises:
        InputError: no cases, or the best temperature lies at the edge of T_RANGE.
    """
    if len(truth) == 0:
        raise InputError("no labelled cases to fit a temperature on")
    # NLL is unimodal in log T for temperature scaling: golden-section search to ~1e-6.
    best = math.exp(golden_section_minimum(
        lambda log_t: nll(rescale(probabilities, t_from, math.exp(log_t)), truth),
        math.log(T_RANGE[0]), math.log(T_RANGE[1]), 1e-6))
    if not T_RANGE[0] * 1.01 < best < T_RANGE[1] / 1.01:
        raise InputError(f"the best temperature lies at the edge of {T_RANGE[0]}..{T_RANGE[1]} ({best:.3g}): "
                         f"the labels and the scores do not belong together (wrong labels file or classes?)")
    return best


def align(scores, manifest):
    """``scores`` as the bundle ``manifest`` would give them.

    Scores made by the bundle itself are returned as they are; scores made by the bundle a
    recalibrated bundle was derived from (same ONNX files, another temperature) are rescaled to
    its temperature, so a derived bundle can be evaluated without screening again. The parent's
    results may name it either way screen has named bundles (``parent_names``).

    Raises:
        InputError: the scores come from an unrelated bundle.
    """
    from dataclasses import replace

    from .scores import made_by

    if made_by(scores, manifest):
        return scores
    parent = manifest.derived.get("from")
    if scores.bundle in parent_names(manifest, scores):
        t_from = float(manifest.derived["from_temperature"])
        return replace(scores, probabilities=rescale(scores.probabilities, t_from, manifest.temperature),
                       bundle=f"{scores.bundle} rescaled to {manifest.tag}'s temperature")
    if parent and scores.bundle.startswith(f"{parent}+") and manifest.derived.get("from_identity"):
        # Its parent's name@version, another digest: an edited parent, or (for a bundle calibrated
        # before both identities were recorded) the parent named the other way, unproven.
        unproven = "from_legacy_identity" not in manifest.derived
        raise InputError(
            f"the results were screened with {scores.bundle}, but {manifest.tag} was calibrated from "
            f"{manifest.derived['from_identity']}: an edited {parent}"
            + (f", or the same one named as screen named it before or since 2026-11-30 (to tell, keep "
               f"{parent}'s folder beside {manifest.folder or 'the derived bundle'})" if unproven else "")
            + "; pass the bundle that made them as --bundle")
    raise InputError(f"the results were screened with {scores.bundle}, not with {manifest.tag}"
                     + (f" or its parent {parent}" if parent else "") + ": pass that bundle's folder as --bundle")


def parent_names(manifest, scores=None) -> set[str]:
    """What results of the bundle ``manifest`` was derived from may name it.

    ``derived`` records the parent's ``name@version`` and its identity (with the TTA it was
    calibrated under): since 2026-11-30 both identities, the digest of the manifest file's
    content and the legacy one (every field rendered) that results screened before then carry.
    A bundle calibrated before this recorded only one of them (the legacy one before 2026-11-30,
    the new one on that day), and neither can be recomputed from the derived manifest (the
    parent's creation time and operating points are not in it). So the parent itself is looked
    for where it usually is (beside the derived bundle, and in the folder the results' summary
    names): a bundle of that ``name@version`` with the same ONNX files whose identity, either way,
    is the recorded one is the parent, and both its identities are accepted.
    """
    derived = manifest.derived
    names = {value for value in (derived.get(key) for key in ("from", "from_identity", "from_legacy_identity"))
             if isinstance(value, str) and value}
    parent = derived.get("from")
    if scores is None or not parent or not derived.get("from_identity") or "from_legacy_identity" in derived \
            or scores.bundle in names or not scores.bundle.startswith(f"{parent}+"):
        return names
    return names | _found_parent_names(manifest, scores)


def _found_parent_names(manifest, scores) -> set[str]:
    """Both identities of the recorded parent, if a bundle on disk is provably it; else none."""
    from dataclasses import replace

    from ..bundle_store import find_bundles
    from ..tta import TTA_MODES

    recorded = manifest.derived["from_identity"]
    for found in find_bundles(_parent_folders(manifest, scores)):
        candidate = found.manifest
        if candidate is None or candidate.tag != manifest.derived["from"] \
                or candidate.segmenter.sha256 != manifest.segmenter.sha256 \
                or candidate.classifier.sha256 != manifest.classifier.sha256:
            continue
        for mode in TTA_MODES:
            variant = candidate if mode == candidate.tta else replace(candidate, tta=mode)
            both = {variant.identity, variant.legacy_identity}
            if recorded in both:
                return both
    return set()


def _parent_folders(manifest, scores) -> list:
    """Where a derived bundle's parent may be: the folder of bundles holding the derived one, and
    the bundle folder the results' summary JSON says screened them."""
    import json
    from pathlib import Path

    from ..results import summary_path
    from .scores import JOURNAL_SUFFIX

    folders = []
    if manifest.folder is not None:
        folders.append(Path(manifest.folder).parent)
    source = Path(scores.source)
    if source.name.endswith(JOURNAL_SUFFIX):
        source = source.with_name(source.name[:-len(JOURNAL_SUFFIX)])
    try:
        named = json.loads(summary_path(source).read_text(encoding="utf-8"))["inputs"]["bundle_dir"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested thousands deep
        named = None
    if isinstance(named, str) and named:
        folders.append(Path(named))
    return folders
