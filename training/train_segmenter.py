"""`python -m training segmenter`: train the U-Net lesion segmenter (Dice loss, optional BCE)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from .common import (Distributed, config_argument_parser, config_from_args, place, read_index, seed_everything,
                     split, unwrap, write_run_files)
from .config import Config
from .data.augment import AUGMENT_PRESETS
from .data.dataset import SegmentationDataset
from .inference import segmenter_state
from .lineage import PIXELS, SETTINGS, guard_resume, pixels_of, stage_settings
from .loop import Validation, fit, make_optimizer
from .models.losses import DiceBCELoss
from .models.segmenter import create_segmenter
from .models.weights import normalisation_for


def segmenter_normalisation(config: Config) -> tuple[list[float], list[float]]:
    encoder = config.segmenter.model.encoder
    return normalisation_for(encoder.removeprefix("tu-"), config.segmenter.model.weights)


def train(config: Config, resume: bool = False) -> Path:
    """Train the segmenter of ``config``; returns the best checkpoint (highest validation Dice)."""
    dist = Distributed.from_env()
    seed_everything(config.seed + dist.rank)
    device = dist.device(config.device)
    stage_dir = config.out / "segmenter"
    settings = stage_settings(config, "segmenter")
    # Every rank checks (it only reads): a refusal on rank 0 alone would leave the others waiting.
    guard_resume(stage_dir, settings, resume, quiet=not dist.is_main)  # before the run files describe them
    if dist.is_main:
        write_run_files(config, stage_dir)

    index = read_index(config)
    index = index[index["mask_path"] != ""]
    mean, std = segmenter_normalisation(config)
    size = config.data.input_size
    steps = config.data.preprocessing
    train_set = SegmentationDataset(split(index, "train"), size, mean, std, augment=config.segmenter.augment,
                                    seed=config.seed, preprocessing=steps,
                                    augment_config=AUGMENT_PRESETS[config.segmenter.augment_preset])
    val_set = SegmentationDataset(split(index, "val"), size, mean, std, augment=False, seed=config.seed,
                                  preprocessing=steps)
    optim = config.segmenter.optim
    sampler = DistributedSampler(train_set, seed=config.seed) if dist.enabled else None
    train_loader = DataLoader(train_set, batch_size=optim.batch_size, shuffle=sampler is None,
                              sampler=sampler, num_workers=config.data.workers, drop_last=len(train_set) > optim.batch_size)
    val_loader = DataLoader(val_set, batch_size=optim.batch_size, num_workers=config.data.workers)

    model = dist.wrap(place(create_segmenter(config.segmenter.model), device, config.channels_last), device)
    loss_fn = DiceBCELoss(bce_weight=config.segmenter.model.bce_weight)
    optimizer = make_optimizer(model, optim, unwrap(model).encoder.parameters())

    def train_step(batch) -> torch.Tensor:
        images, masks = (place(t, device, config.channels_last) for t in batch)
        return loss_fn(model(images), masks)

    def validate() -> Validation:
        losses, dice = [], []
        for images, masks in val_loader:
            images, masks = (place(t, device, config.channels_last) for t in (images, masks))
            logits = unwrap(model)(images)
            losses.append(float(loss_fn(logits, masks)) * len(images))
            dice.extend(_dice_per_image(logits > 0, masks > 0.5))
        loss = dist.mean(sum(losses) / len(val_set), device)
        mean_dice = dist.mean(float(np.mean(dice)), device)
        return Validation(loss=loss, score=mean_dice, metrics={"dice": mean_dice})

    extra = {**segmenter_state(config.segmenter.model, mean, std), PIXELS: pixels_of(config), SETTINGS: settings}
    best = fit(model=model, optimizer=optimizer, optim=optim, train_loader=train_loader,
               train_step=train_step, validate=validate, stage_dir=stage_dir, dist=dist,
               resume=resume, extra_state=extra)
    dist.close()
    return best


def _dice_per_image(pred: torch.Tensor, target: torch.Tensor) -> list[float]:
    pred, target = pred.flatten(1).float(), target.flatten(1).float()
    inter = (pred * target).sum(1)
    total = pred.sum(1) + target.sum(1)
    # Both empty counts as perfect agreement.
    dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    return dice.cpu().tolist()


def main(argv: list[str] | None = None) -> int:
    parser = config_argument_parser("segmenter", "Train the U-Net lesion segmenter.")
    parser.add_argument("--resume", action="store_true", help="continue from <out_dir>/segmenter/last.pt, with the settings the run "
                        "started with (a longer run excepted)")
    args = parser.parse_args(argv)
    best = train(config_from_args(args), resume=args.resume)
    print(f"best segmenter checkpoint: {best}")
    return 0
