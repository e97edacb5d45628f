"""How far FP16 predictions are from FP32: top-1 agreement and max |delta p|, with the pass limits.

Both ``screen engines verify`` (TensorRT FP16 vs ONNX Runtime FP32) and
``bench/fp16_fidelity.py`` (FP16 ONNX vs FP32 ONNX on the CPU) feed batches of both backends'
outputs to a ``FidelityTally`` and read one ``FidelityReport``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from ..backends.bundle import BatchOutputs, BundleBackend
from ..manifest import Manifest
from ..preprocess import risk_score, softmax

MIN_TOP1_AGREEMENT = 0.99  # fraction of images whose top class must not change
MAX_DELTA_P = 0.02  # largest tolerated change of any class probability
SHOWN_DISAGREEMENTS = 10  # image names listed in the report lines


@dataclass(frozen=True)
class FidelityReport:
    """FP16 against FP32 over a set of images."""

    images: int
    top1_agreement: float  # fraction of images with the same top class
    max_delta_p: float  # max over images and classes of |p_fp16 - p_fp32| (after temperature)
    mean_delta_p: float  # mean of the per-image max |delta p|
    max_delta_risk: float  # max |risk_fp16 - risk_fp32|: what moves an image in the ranking
    mask_flip_fraction: float  # fraction of mask pixels on the other side of the threshold
    disagreements: list[str] = field(default_factory=list)  # names of images whose top class changed
    # FP32 gap between their two best classes: a flip on a near-tie (gap below max |delta p|)
    # is FP16 noise; one on a clear winner is a real problem.
    disagreement_margins: list[float] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        """One line per limit this report breaks; [] when it passes."""
        problems = []
        if self.top1_agreement < MIN_TOP1_AGREEMENT:
            problems.append(f"top-1 agreement {self.top1_agreement:.2%} is below {MIN_TOP1_AGREEMENT:.0%}")
        if self.max_delta_p > MAX_DELTA_P:
            problems.append(f"max |delta p| {self.max_delta_p:.4f} is above {MAX_DELTA_P}")
        return problems

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line with the two judged numbers and their limits."""
        agree = round(self.top1_agreement * self.images)
        return (f"top-1 agreement {self.top1_agreement:.2%} ({agree}/{self.images} images), "
                f"max |delta p| {self.max_delta_p:.4f} (limits: >= {MIN_TOP1_AGREEMENT:.0%}, <= {MAX_DELTA_P})")

    def lines(self) -> list[str]:
        """The report as indented lines for a terminal."""
        lines = [f"  {self.summary()}",
                 f"  mean per-image max |delta p| {self.mean_delta_p:.4f}, max |delta risk| "
                 f"{self.max_delta_risk:.4f}, mask pixels flipped {self.mask_flip_fraction:.4%}"]
        if self.disagreements:
            shown = [f"{name} (FP32 margin {margin:.4f})" for name, margin in
                     zip(self.disagreements[:SHOWN_DISAGREEMENTS], self.disagreement_margins)]
            more = len(self.disagreements) - SHOWN_DISAGREEMENTS
            lines.append(f"  top class changed on: {', '.join(shown)}" + (f" and {more} more" if more > 0 else ""))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "failures": self.failures,
                "limits": {"min_top1_agreement": MIN_TOP1_AGREEMENT, "max_delta_p": MAX_DELTA_P}}


class FidelityTally:
    """Accumulates reference (FP32) and candidate (FP16) outputs batch by batch."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self._agree = 0
        self._images = 0
        self._max_dp: list[float] = []
        self._max_drisk = 0.0
        self._flipped = 0
        self._pixels = 0
        self._disagreements: list[str] = []
        self._margins: list[float] = []

    def add(self, names: list[str], reference: BatchOutputs, candidate: BatchOutputs) -> None:
        """Add one batch; ``names`` label the images in the report's disagreement list."""
        if reference.logits.shape != candidate.logits.shape or reference.mask.shape != candidate.mask.shape:
            raise ValueError(f"output shapes differ: logits {reference.logits.shape} vs {candidate.logits.shape}, "
                             f"mask {reference.mask.shape} vs {candidate.mask.shape}")
        t = self.manifest.temperature
        p_ref, p_cand = softmax(reference.logits, t), softmax(candidate.logits, t)
        same = p_ref.argmax(axis=1) == p_cand.argmax(axis=1)
        self._agree += int(same.sum())
        self._images += len(same)
        best_two = np.sort(p_ref, axis=1)[:, -2:]
        for name, ok, (second, first) in zip(names, same, best_two):
            if not ok:
                self._disagreements.append(name)
                self._margins.append(float(first - second))
        self._max_dp += np.abs(p_ref - p_cand).max(axis=1).tolist()
        malignant = self.manifest.malignant_indices
        drisk = np.abs(risk_score(p_ref, malignant) - risk_score(p_cand, malignant))
        self._max_drisk = max(self._max_drisk, float(drisk.max(initial=0.0)))
        threshold = self.manifest.mask_threshold
        self._flipped += int(((reference.mask > threshold) != (candidate.mask > threshold)).sum())
        self._pixels += reference.mask.size

    def report(self) -> FidelityReport:
        if self._images == 0:
            raise ValueError("no images were compared")
        return FidelityReport(
            images=self._images, top1_agreement=self._agree / self._images,
            max_delta_p=float(max(self._max_dp)), mean_delta_p=float(np.mean(self._max_dp)),
            max_delta_risk=self._max_drisk, mask_flip_fraction=self._flipped / max(self._pixels, 1),
            disagreements=list(self._disagreements), disagreement_margins=list(self._margins),
        )


def compare_backends(manifest: Manifest, reference: BundleBackend, candidate: BundleBackend,
                     batches: Iterable[Any]) -> FidelityReport:
    """Run both (entered) backends on every batch and compare their outputs.

    Args:
        manifest: the bundle's manifest (temperature, malignant classes, mask threshold).
        reference: the FP32 backend.
        candidate: the FP16 backend.
        batches: ``samples.SampleBatch`` items (names, seg_image, cls_image, meta).
    """
    tally = FidelityTally(manifest)
    for batch in batches:
        inputs = (batch.seg_image, batch.cls_image, batch.meta)
        tally.add(batch.names, reference.run_batch(*inputs), candidate.run_batch(*inputs))
    return tally.report()
