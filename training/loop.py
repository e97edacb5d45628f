"""The epoch loop both models train with: progress bar, learning-rate schedule, checkpoints, resume."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from tqdm import tqdm

from .common import Distributed, load_checkpoint, save_checkpoint, unwrap
from .config import OptimConfig

LOG_INTERVAL_S = 60.0  # seconds between progress lines when stdout is not a terminal


@dataclass
class Validation:
    """What one validation pass reports."""

    loss: float
    score: float  # higher is better; picks best.pt
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    score: float
    lr: float
    metrics: dict[str, Any]


def make_optimizer(model: torch.nn.Module, optim: OptimConfig,
                   backbone_params: Iterable[torch.nn.Parameter] = ()) -> torch.optim.Optimizer:
    """AdamW (paper), with an optional lower learning rate (``backbone_lr``) for ``backbone_params``."""
    backbone = {id(p) for p in backbone_params}
    head = [p for p in model.parameters() if id(p) not in backbone]
    groups = [{"params": head, "lr": optim.lr}]
    if backbone:
        groups.append({"params": [p for p in model.parameters() if id(p) in backbone],
                       "lr": optim.backbone_lr if optim.backbone_lr is not None else optim.lr})
    return torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay)


def fit(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    optim: OptimConfig,
    train_loader: torch.utils.data.DataLoader,
    train_step: Callable[[Any], torch.Tensor],
    validate: Callable[[], Validation],
    stage_dir: Path,
    dist: Distributed,
    resume: bool = False,
    on_epoch_start: Callable[[int], None] | None = None,
    extra_state: dict[str, Any] | None = None,
) -> Path:
    """Train for ``optim.epochs`` epochs; returns the path of the best checkpoint.

    ``train_step(batch)`` returns the loss of one batch (the loop does backward and step).
    ``last.pt`` is written after every epoch, so ``resume=True`` continues a killed run from
    the last finished epoch; ``best.pt`` keeps the epoch with the highest validation score.
    """
    steps_per_epoch = _steps_per_epoch(train_loader, optim)
    scheduler = make_scheduler(optimizer, optim, steps_per_epoch)
    per_step = optim.schedule == "cosine"
    last_path, best_path = stage_dir / "last.pt", stage_dir / "best.pt"
    history_path = stage_dir / "history.jsonl"
    start_epoch, best_score = 0, -math.inf
    if resume and last_path.is_file():
        state = load_checkpoint(last_path)
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_score = state["epoch"] + 1, state["best_score"]
        torch.set_rng_state(state["rng"])
        if dist.is_main:
            print(f"resuming from {last_path} at epoch {start_epoch + 1}")
    elif history_path.exists() and dist.is_main:
        # A fresh start in the same folder: the earlier run's history is kept, never deleted.
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        history_path.rename(history_path.with_name(f"history.before-{stamp}.jsonl"))

    for epoch in range(start_epoch, optim.epochs):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        train_loss = _train_epoch(model, optimizer, train_loader, train_step, epoch, optim, dist,
                                  scheduler if per_step else None)
        model.eval()
        with torch.no_grad():
            result = validate()
        val_loss = result.loss
        if not per_step:
            scheduler.step(val_loss)
        record = EpochRecord(epoch + 1, train_loss, val_loss, result.score,
                             optimizer.param_groups[0]["lr"], result.metrics)
        if dist.is_main:
            print(f"epoch {epoch + 1}/{optim.epochs}: train loss {train_loss:.4f}, "
                  f"val loss {val_loss:.4f}, {_metrics_line(result.metrics)}")
            with history_path.open("a") as fh:
                fh.write(json.dumps(asdict(record)) + "\n")
            state = {
                "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "rng": torch.get_rng_state(),
                "best_score": max(best_score, result.score), **(extra_state or {}),
            }
            if result.score > best_score:
                best_score = result.score
                save_checkpoint(best_path, {**state, "metrics": result.metrics})
            if epoch >= optim.epochs - optim.average_last:
                save_checkpoint(_epoch_weights_path(stage_dir, epoch + 1), {"model": unwrap(model).state_dict()})
            save_checkpoint(last_path, state)
    if optim.average_last > 0:
        _average_last_epochs(model, optim, validate, stage_dir, dist, best_score, extra_state)
    return best_path


def _metrics_line(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def _epoch_weights_path(stage_dir: Path, epoch: int) -> Path:
    return stage_dir / f"epoch-{epoch:03d}.weights.pt"


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of same-shaped state dicts (floating tensors, BatchNorm running
    statistics included); integer tensors such as ``num_batches_tracked`` come from the last one."""
    if not states:
        raise ValueError("no state dicts to average")
    averaged = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            averaged[key] = torch.stack([s[key].float() for s in states]).mean(dim=0).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged


def _average_last_epochs(model, optim: OptimConfig, validate, stage_dir: Path, dist: Distributed,
                         best_score: float, extra_state: dict[str, Any] | None) -> None:
    """Average the saved weights of the last ``optim.average_last`` epochs into averaged.pt,
    validate them, and make them best.pt if they score higher than every single epoch."""
    if dist.enabled:
        torch.distributed.barrier()  # rank 0 wrote the epoch weights every rank reads here
    wanted = range(max(1, optim.epochs - optim.average_last + 1), optim.epochs + 1)
    epochs = [e for e in wanted if _epoch_weights_path(stage_dir, e).is_file()]
    if len(epochs) < 2:
        if dist.is_main:
            print(f"weight averaging skipped: {len(epochs)} of {len(wanted)} epoch weights saved")
        return
    own = {k: v.clone() for k, v in unwrap(model).state_dict().items()}
    unwrap(model).load_state_dict(average_state_dicts(
        [load_checkpoint(_epoch_weights_path(stage_dir, e))["model"] for e in epochs]))
    model.eval()
    with torch.no_grad():
        result = validate()
    if dist.is_main:
        print(f"average of epochs {epochs[0]}-{epochs[-1]}: val loss {result.loss:.4f}, "
              f"{_metrics_line(result.metrics)}")
        state = {"model": unwrap(model).state_dict(), "averaged_epochs": epochs, "epoch": optim.epochs - 1,
                 "best_score": max(best_score, result.score), "metrics": result.metrics, **(extra_state or {})}
        save_checkpoint(stage_dir / "averaged.pt", state)
        with (stage_dir / "history.jsonl").open("a") as fh:
            fh.write(json.dumps({"averaged_epochs": epochs, "val_loss": result.loss, "score": result.score,
                                 "metrics": result.metrics}) + "\n")
        if result.score > best_score:
            save_checkpoint(stage_dir / "best.pt", state)
            print("the averaged weights validate best: best.pt is the average")
    unwrap(model).load_state_dict(own)


def make_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, steps_per_epoch: int):
    """The learning-rate schedule of ``optim.schedule``.

    "cosine" is stepped once per batch: every parameter group goes from its own learning rate
    down to ``min_lr_ratio`` times it over ``epochs * steps_per_epoch`` steps. "plateau" is
    stepped once per epoch with the validation loss.
    """
    if optim.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=optim.plateau_factor, patience=optim.plateau_patience)
    if optim.schedule == "cosine":
        total = max(1, optim.epochs * steps_per_epoch)
        floor = optim.min_lr_ratio

        def factor(step: int) -> float:
            progress = min(step, total) / total
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise ValueError(f"unknown learning-rate schedule {optim.schedule!r}")


def _steps_per_epoch(loader, optim: OptimConfig) -> int:
    return len(loader) if optim.max_steps_per_epoch is None else min(len(loader), optim.max_steps_per_epoch)


def _train_epoch(model, optimizer, loader, train_step, epoch, optim: OptimConfig, dist: Distributed,
                 step_scheduler=None) -> float:
    model.train()
    total, count = 0.0, 0
    steps = _steps_per_epoch(loader, optim)
    desc = f"epoch {epoch + 1}/{optim.epochs}"
    # A bar on a terminal; in a log file (nohup, cron) a plain line every LOG_INTERVAL_S instead.
    bar = tqdm(total=steps, desc=desc, disable=None if dist.is_main else True, leave=False, dynamic_ncols=True)
    log_lines = dist.is_main and bar.disable
    start = last_log = time.monotonic()
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        loss = train_step(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step_scheduler is not None:
            step_scheduler.step()
        total += float(loss.detach())
        count += 1
        bar.set_postfix(loss=f"{total / count:.4f}")
        bar.update()
        now = time.monotonic()
        if log_lines and now - last_log >= LOG_INTERVAL_S:
            last_log = now
            rate = count / (now - start)
            print(f"{desc}: step {count}/{steps}, loss {total / count:.4f}, {rate:.2f} steps/s, "
                  f"ETA {(steps - count) / rate / 60:.1f} min", flush=True)
    bar.close()
    return total / max(count, 1)
