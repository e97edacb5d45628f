"""Preprocessed batches of a folder of images for comparing two backends (verify, FP16 bench).

Images are found, decoded and matched to their metadata row exactly as ``screen folder`` does
(``screening.images``, ``screening.patients``); without a CSV every field is ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError
from ..images import ImageDecodeError, discover_images, load_image
from ..manifest import Manifest
from ..patients import read_patients
from ..preprocess import normalise, resize_rgb


@dataclass
class SampleBatch:
    """One batch ready for ``BundleBackend.run_batch``."""

    names: list[str]  # image paths relative to the folder
    seg_image: np.ndarray  # (N, 3, H, W) float32, segmenter normalisation
    cls_image: np.ndarray  # (N, 3, H, W) float32, classifier normalisation
    meta: np.ndarray  # (N, D) float32 one-hot metadata


def iter_batches(folder: Path, manifest: Manifest, batch_size: int, meta_csv: Path | None = None,
                 limit: int | None = None, skipped: list[str] | None = None) -> Iterator[SampleBatch]:
    """Decode, resize and normalise the images of a folder, ``batch_size`` at a time.

    Args:
        folder: images folder (searched recursively, in ``screen folder``'s order).
        manifest: gives the input size, both models' mean/std and the metadata vocabulary.
        batch_size: images per batch.
        meta_csv: optional patients CSV; images without a row get unknown metadata.
        limit: use at most this many images (the first in that order).
        skipped: when given, collects "name: reason" for files that could not be decoded.

    Raises:
        InputError: the folder is missing or holds no images.
        MetadataError: the CSV cannot be used at all.
    """
    images = discover_images(Path(folder)).images[:limit or None]
    if not images:
        raise InputError(f"no images found in {folder}")
    table = read_patients(meta_csv, images=images) if meta_csv is not None else None
    pending: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name in images:
        try:
            rgb = load_image(Path(folder) / name, manifest.input_size).rgb
        except ImageDecodeError as exc:
            if skipped is not None:
                skipped.append(f"{name}: {exc}")
            continue
        row = table.match(name).row if table is not None else None
        meta, _ = manifest.metadata.encode(*((row.age, row.sex, row.site) if row is not None else ()))
        pending.append((name, resize_rgb(rgb, manifest.input_size), meta))
        if len(pending) == batch_size:
            yield _batch(pending, manifest)
            pending = []
    if pending:
        yield _batch(pending, manifest)


def _batch(items: list[tuple[str, np.ndarray, np.ndarray]], manifest: Manifest) -> SampleBatch:
    pixels = np.stack([image for _, image, _ in items])
    return SampleBatch(
        names=[name for name, _, _ in items],
        seg_image=normalise(pixels, manifest.segmenter.mean, manifest.segmenter.std),
        cls_image=normalise(pixels, manifest.classifier.mean, manifest.classifier.std),
        meta=np.stack([meta for _, _, meta in items]).astype(np.float32),
    )
