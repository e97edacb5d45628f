"""A bundle's two models on one backend: the unit the screening pipeline drives.

The pipeline hands one preprocessed batch to ``run_batch`` and gets the lesion probability
map and the class logits back. Backends that can keep the mask on the device between the two
models (TensorRT) override ``run_batch``; the others chain two Runners through the host.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..attention import ATTENTION_OUTPUT
from ..manifest import Manifest
from .base import Runner


@dataclass
class BatchOutputs:
    """What one batch gives back."""

    mask: np.ndarray  # (N, 1, H, W) float32 lesion probability
    logits: np.ndarray  # (N, classes) float32, before temperature scaling
    # (N, queries, h, w) float32 attention maps, when the bundle declares them (screening.attention)
    attention: np.ndarray | None = None


class BundleBackend(ABC):
    """Segmenter and classifier of one bundle, opened together; a context manager."""

    name = "abstract"  # backend name reported in the summary, e.g. "onnxruntime"

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    @abstractmethod
    def __enter__(self) -> "BundleBackend": ...

    @abstractmethod
    def __exit__(self, *exc_info) -> None: ...

    @abstractmethod
    def run_batch(self, seg_image: np.ndarray, cls_image: np.ndarray, meta: np.ndarray) -> BatchOutputs:
        """Segment then classify one batch.

        Args:
            seg_image: (N, 3, H, W) float32, normalised with the segmenter's mean/std.
            cls_image: (N, 3, H, W) float32, normalised with the classifier's mean/std.
            meta: (N, D) float32 one-hot metadata from the manifest's vocabulary.
        """

    @property
    def description(self) -> str:
        """One line for the summary, e.g. 'onnxruntime (CPU, 2 threads)'."""
        return self.name

    @property
    def results_backend(self) -> str:
        """The backend whose numbers this one's results are, as the journal records it: a resume
        on another never reuses them (screening.journal)."""
        return self.name


class RunnerPairBackend(BundleBackend):
    """Chains a segmenter Runner and a classifier Runner through host memory."""

    def __init__(self, manifest: Manifest, segmenter: Runner, classifier: Runner) -> None:
        super().__init__(manifest)
        self.segmenter = segmenter
        self.classifier = classifier
        self.name = segmenter.backend

    def __enter__(self) -> "RunnerPairBackend":
        self.segmenter.__enter__()
        try:
            self.classifier.__enter__()
        except BaseException:
            self.segmenter.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.classifier.__exit__(*exc_info)
        finally:
            self.segmenter.__exit__(*exc_info)

    def run_batch(self, seg_image: np.ndarray, cls_image: np.ndarray, meta: np.ndarray) -> BatchOutputs:
        mask = self.segmenter.infer({"image": seg_image})["mask"]
        outputs = self.classifier.infer({"image": cls_image, "mask": mask, "meta": meta})
        return BatchOutputs(mask=mask, logits=outputs["logits"], attention=outputs.get(ATTENTION_OUTPUT))
