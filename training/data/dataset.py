"""PyTorch datasets over the index: segmenter image/mask pairs, classifier image+mask+metadata items.

Pixels go through ``screening.preprocess`` (the shared resize and normalisation, images
decoded by the runtime's own ``screening.images.load_image``), so training sees exactly what the runtime feeds the models.
Augmentation happens at input size, between the resize and the normalisation.

Randomness (augmentation, metadata dropout) comes from a fresh generator per load, seeded by
(seed, epoch, DataLoader worker seed, item, how often this copy of the dataset has loaded the
item). Every load draws anew without the training loop having to call anything, with or
without workers, persistent or not (torch gives workers a new seed for every epoch unless
they persist, and persistent workers keep their counts); a run with a seeded torch is
reproducible. ``set_epoch`` is there for loops that want the epoch in the seed explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, get_worker_info

from screening.images import ImageDecodeError, load_image
from screening.metadata import MetaCodes, MetadataVocabulary
from screening.preprocess import apply_preprocessing, normalise, resize_mask, resize_rgb

from .augment import DEFAULT_AUGMENT, AugmentConfig, augment_pair
from .errors import DataError
from .sources import is_missing


def read_rgb(path: str | Path, min_size: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB with the runtime's decoder.

    ``screening.images.load_image`` applies EXIF orientation, bit-depth conversion and the
    reduced-size JPEG decode exactly as screening will, so no pixel differs between the two.
    """
    try:
        return load_image(Path(path), min_size).rgb
    except (ImageDecodeError, OSError) as exc:
        raise DataError(f"{path}: cannot read or decode the image ({exc})") from exc


def load_resized(path: str | Path, size: tuple[int, int], preprocessing: Sequence[dict] = ()) -> np.ndarray:
    """Decode like the runtime, resize to ``size`` = (height, width) and apply the bundle's
    preprocessing steps (``screening.preprocess.apply_preprocessing``): a model's input pixels."""
    return apply_preprocessing(resize_rgb(read_rgb(path, size), size), preprocessing)


def runtime_inputs(rows: pd.DataFrame, size: tuple[int, int], preprocessing: Sequence[dict],
                   vocabulary: MetadataVocabulary, segmenter_norm: tuple[Sequence[float], Sequence[float]],
                   classifier_norm: tuple[Sequence[float], Sequence[float]]) -> dict[str, np.ndarray]:
    """Index rows as the runtime feeds them to a bundle's two models: ``seg_image`` and
    ``cls_image`` (pixels decoded, resized, preprocessed and normalised with each model's
    (mean, std)) and ``meta`` (the one-hot metadata, no dropout)."""
    pixels = np.stack([load_resized(path, size, preprocessing) for path in rows["image_path"]])
    meta = np.stack([vocabulary.encode(r.age, r.sex, r.site)[0] for r in rows.itertuples()]).astype(np.float32)
    return {"seg_image": normalise(pixels, *segmenter_norm), "cls_image": normalise(pixels, *classifier_norm),
            "meta": meta}


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a mask file to (H, W) uint8 (0/255 binary, or a 0..255 probability)."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DataError(f"{path}: cannot read or decode the mask")
    return mask


def _require(rows: pd.DataFrame, column: str, hint: str) -> None:
    absent = rows[column].map(is_missing) if column in rows else pd.Series(True, index=rows.index)
    if absent.any():
        example = rows.loc[absent, "image_id"].iloc[0]
        raise DataError(f"{int(absent.sum())} of {len(rows)} index rows have no {column} "
                        f"(e.g. {example}): {hint}")


def _size(input_size: int | Sequence[int]) -> tuple[int, int]:
    """(height, width) from a square side or a pair."""
    if isinstance(input_size, int):
        return input_size, input_size
    return int(input_size[0]), int(input_size[1])


class _IndexDataset(Dataset):
    """Shared plumbing: rows, preprocessing parameters and the per-item generator."""

    def __init__(self, index: pd.DataFrame, input_size: int | tuple[int, int], mean: Sequence[float],
                 std: Sequence[float], augment: bool, seed: int, preprocessing: Sequence[dict] = (),
                 augment_config: AugmentConfig = DEFAULT_AUGMENT) -> None:
        self.rows = index.reset_index(drop=True)
        self.preprocessing = [dict(step) for step in preprocessing]
        self.augment_config = augment_config
        _require(self.rows, "image_path", "prepare the index with an images folder")
        self.input_size = _size(input_size)
        self.mean, self.std = list(mean), list(std)
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self._loads: dict[int, int] = {}  # item -> loads so far by this copy (one per worker)

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Put the epoch into the seed (optional: every load already draws anew)."""
        self.epoch = int(epoch)

    def next_rng(self, item: int) -> np.random.Generator:
        """A new generator for this load of ``item`` (each call counts as one load)."""
        info = get_worker_info()
        worker_seed = info.seed if info is not None else 0
        loads = self._loads.get(item, 0)
        self._loads[item] = loads + 1
        return np.random.default_rng([self.seed, self.epoch, worker_seed, int(item), loads])

    def _pair(self, item: int, mask_path: str | Path) -> tuple[torch.Tensor, np.ndarray, np.random.Generator]:
        """Resized (and augmented) image, normalised, with its uint8 mask at input size."""
        # Preprocessing (colour constancy) before augmentation: the model learns around the
        # normalised colours it will see at screening time, jittered by what it fails to remove.
        image = load_resized(self.rows.at[item, "image_path"], self.input_size, self.preprocessing)
        mask = resize_mask(read_mask(mask_path), self.input_size)
        rng = self.next_rng(item)
        if self.augment:
            image, mask = augment_pair(image, mask, rng, self.augment_config)
        return torch.from_numpy(normalise(image, self.mean, self.std)), mask, rng


class SegmentationDataset(_IndexDataset):
    """Items ``(image, mask)``: float32 (3, H, W) normalised and float32 (1, H, W) in {0, 1}.

    Args:
        index: index rows (one split), with image_path and mask_path.
        input_size: (height, width) of the model input, or one side of a square.
        mean, std: per-channel normalisation on 0..1 pixels.
        augment: apply ``augment_pair`` (training only).
        seed: base seed of the per-item generators.
        preprocessing: the bundle's preprocessing steps (manifest ``preprocessing``).
        augment_config: augmentation strengths (``augment.AUGMENT_PRESETS``).
    """

    def __init__(self, index: pd.DataFrame, input_size: int | tuple[int, int], mean: Sequence[float],
                 std: Sequence[float], augment: bool = False, seed: int = 0, preprocessing: Sequence[dict] = (),
                 augment_config: AugmentConfig = DEFAULT_AUGMENT) -> None:
        super().__init__(index, input_size, mean, std, augment, seed, preprocessing, augment_config)
        _require(self.rows, "mask_path", "the segmenter trains only on images with a ground-truth mask")

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask, _ = self._pair(item, self.rows.at[item, "mask_path"])
        return image, torch.from_numpy((mask >= 128).astype(np.float32)[None])


class ClassificationDataset(_IndexDataset):
    """Items ``{image, mask, meta, label}`` for the fusion classifier.

    ``mask`` is float32 (1, H, W) in 0..1: the cached predicted mask ``<mask_dir>/<image_id>.png``
    when ``mask_dir`` is given (what the runtime feeds the classifier), else the index's
    mask_path. ``meta`` is the one-hot vector of ``vocabulary``; with ``meta_dropout`` p each
    field is independently replaced by ``unknown`` with probability p, so that a missing value
    at screening time is in-distribution. Use p > 0 for the training split only.

    Args:
        index: index rows (one split), with image_path, label, age, sex, site.
        input_size: (height, width) of the model input, or one side of a square.
        mean, std: per-channel normalisation on 0..1 pixels.
        vocabulary: metadata encoding (saved in the bundle manifest).
        class_names: classifier output order; every index label must be one of them.
        mask_dir: folder of predicted masks named <image_id>.png; None uses mask_path.
        augment: apply ``augment_pair`` (training only).
        meta_dropout: per-field probability of replacing a value by unknown.
        seed: base seed of the per-item generators.
        preprocessing: the bundle's preprocessing steps (manifest ``preprocessing``).
        augment_config: augmentation strengths (``augment.AUGMENT_PRESETS``).
    """

    def __init__(self, index: pd.DataFrame, input_size: int | tuple[int, int], mean: Sequence[float],
                 std: Sequence[float], vocabulary: MetadataVocabulary, class_names: Sequence[str], *,
                 mask_dir: str | Path | None = None, augment: bool = False, meta_dropout: float = 0.0,
                 seed: int = 0, preprocessing: Sequence[dict] = (),
                 augment_config: AugmentConfig = DEFAULT_AUGMENT) -> None:
        super().__init__(index, input_size, mean, std, augment, seed, preprocessing, augment_config)
        if not 0.0 <= meta_dropout <= 1.0:
            raise ValueError(f"meta_dropout must lie in [0, 1], got {meta_dropout}")
        self.vocabulary = vocabulary
        self.class_names = list(class_names)
        self.meta_dropout = float(meta_dropout)
        self.mask_paths = self._mask_paths(mask_dir)
        self.labels = self._labels()
        # The source of every item, for source-balanced sampling (an index without one is one source).
        self.sources = list(self.rows["source"].fillna("")) if "source" in self.rows else [""] * len(self.rows)
        self.codes = [vocabulary.codes(r.age, r.sex, r.site)[0]
                      for r in self.rows[["age", "sex", "site"]].itertuples()]

    def _mask_paths(self, mask_dir: str | Path | None) -> list[str]:
        if mask_dir is None:
            _require(self.rows, "mask_path", "pass mask_dir with the segmenter's predicted masks")
            return list(self.rows["mask_path"].astype(str))
        return [str(Path(mask_dir) / f"{image_id}.png") for image_id in self.rows["image_id"]]

    def _labels(self) -> list[int]:
        unknown = sorted(set(self.rows["label"]) - set(self.class_names))
        if unknown:
            raise DataError(f"index labels {', '.join(map(str, unknown))} are not among the classes "
                            f"{', '.join(self.class_names)}")
        return [self.class_names.index(label) for label in self.rows["label"]]

    def drop_metadata(self, codes: MetaCodes, rng: np.random.Generator) -> MetaCodes:
        """Each field replaced by its unknown code with probability ``meta_dropout``."""
        if self.meta_dropout <= 0.0:
            return codes
        unknown = self.vocabulary.unknown_codes()
        drop = rng.random(3) < self.meta_dropout
        return MetaCodes(age=unknown.age if drop[0] else codes.age,
                         sex=unknown.sex if drop[1] else codes.sex,
                         site=unknown.site if drop[2] else codes.site)

    def __getitem__(self, item: int) -> dict[str, Any]:
        image, mask, rng = self._pair(item, self.mask_paths[item])
        codes = self.drop_metadata(self.codes[item], rng)
        return {
            "image": image,
            "mask": torch.from_numpy((mask.astype(np.float32) / 255.0)[None]),
            "meta": torch.from_numpy(self.vocabulary.one_hot(codes)),
            "label": self.labels[item],
        }
