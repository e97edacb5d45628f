"""Plumbing shared by the training commands: devices, seeds, torchrun, checkpoints, provenance."""

from __future__ import annotations

import argparse
import json
import os
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from screening.atomic import atomic_file

from .card import REPO_ROOT, commit_label, data_sha256, git_state
from .config import Config, ConfigError, load_config, save_config, to_dict


def config_argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every training command shares: --config, --set, --resume."""
    parser = argparse.ArgumentParser(prog=f"python -m training {prog}", description=description)
    parser.add_argument("--config", type=Path, help="YAML configuration (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set classifier.optim.epochs=3 (repeatable)")
    parser.add_argument("--run-name", nargs="?", const="", default=None, metavar="NAME",
                        help="keep this run in its own folder, <out_dir>/NAME (bare --run-name: a new "
                             "UTC timestamp, printed; give the same NAME to the later stages). "
                             "Without it, out_dir as configured")
    return parser


def run_name_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# Paths a config may point into its own out_dir that belong to the run: with --run-name they
# move into the run's folder along with out_dir (data.index stays: one index serves every run).
RUN_PATHS = ("classifier.init_from", "export.out_dir")


def config_from_args(args: argparse.Namespace) -> Config:
    try:
        config = load_config(args.config, args.overrides)
        run_name = getattr(args, "run_name", None)
        if run_name is None:
            return config
        if run_name == "" and getattr(args, "resume", False):
            raise ConfigError("--resume needs the name of the run to continue (--run-name NAME): a bare "
                              "--run-name starts a new, empty run folder, with nothing to resume")
        name = run_name or run_name_now()
        if "/" in name or name in (".", ".."):
            raise ConfigError(f"--run-name {name!r} must be a plain folder name")
        folder = Path(config.out_dir) / name
        print(f"run folder: {folder} (pass --run-name {name} to the later stages)")
        moved = _rebased_run_paths(config, folder, args.overrides)
        # JSON strings are YAML strings: a folder name YAML would read as a number stays a string.
        return load_config(args.config, [*args.overrides, f"out_dir={json.dumps(str(folder))}",
                                         *(f"{key}={json.dumps(path)}" for key, path in moved.items())])
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from exc


def _rebased_run_paths(config: Config, folder: Path, overrides: list[str]) -> dict[str, str]:
    """``RUN_PATHS`` that lie under the configured out_dir, moved to the same place under the run's
    ``folder`` (printed). A path elsewhere, already in the run folder, or given with ``--set`` on
    this command line stays as it is: it names what the user chose."""
    given = {assignment.split("=", 1)[0].strip() for assignment in overrides}
    out, run = Path(os.path.abspath(config.out_dir)), Path(os.path.abspath(folder))
    moved = {}
    for key in RUN_PATHS:
        section, leaf = key.split(".")
        value = getattr(getattr(config, section), leaf)
        if not value:
            continue
        path = Path(os.path.abspath(value))
        if not path.is_relative_to(out) or path.is_relative_to(run):
            continue
        if key in given or section in given:
            print(f"{key}: {value} (given with --set) kept, although it lies under out_dir {config.out_dir}, "
                  f"not in the run folder")
            continue
        inside = path.relative_to(out)
        moved[key] = str((run if Path(value).is_absolute() else folder) / inside)
        print(f"{key}: {value} -> {moved[key]} (under out_dir: moved into the run folder)")
    return moved


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Distributed:
    """torchrun's process group when launched with WORLD_SIZE > 1, else a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        return cls(rank=dist.get_rank(), world_size=world,
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")))

    def device(self, preference: str) -> torch.device:
        if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise SystemExit("error: device 'cuda' requested but no CUDA GPU is visible")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if not self.enabled:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def mean(self, value: float, device: torch.device) -> float:
        """Average a scalar over ranks (the validation loss the scheduler sees)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor.item() / self.world_size)

    def close(self) -> None:
        if self.enabled:
            dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def read_index(config: Config) -> pd.DataFrame:
    """The prepared index, all cells as strings; raises SystemExit with a hint when missing."""
    path = Path(config.data.index)
    if not path.is_file():
        raise SystemExit(f"error: data index {path} not found; create it with `python -m training prepare`")
    index = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"image_id", "image_path", "label", "split"} - set(index.columns)
    if missing:
        raise SystemExit(f"error: {path} is not a prepared index (missing columns {sorted(missing)})")
    return index


def split(index: pd.DataFrame, name: str) -> pd.DataFrame:
    part = index[index["split"] == name].reset_index(drop=True)
    if part.empty:
        raise SystemExit(f"error: the index has no {name!r} rows")
    return part


def provenance(config: Config) -> dict[str, Any]:
    """What produced a checkpoint: config, data index and its sha256, git commit, time."""
    index = Path(config.data.index)
    return {
        "config": to_dict(config),
        "data_index": str(index),
        # Paths reduced to file names: the same data on another machine has the same hash.
        "data_index_sha256": data_sha256(index),
        "git_commit": commit_label(git_state(REPO_ROOT)),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }


def place(item: torch.nn.Module | torch.Tensor, device: torch.device, channels_last: bool):
    """A model or batch tensor on ``device``; with ``channels_last`` the model's convolution
    weights and 4-D (image-like) tensors in NHWC, which PyTorch's CPU convolutions run faster."""
    if channels_last and (isinstance(item, torch.nn.Module) or item.dim() == 4):
        return item.to(device, memory_format=torch.channels_last)
    return item.to(device)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically and durably: a killed run or a power cut never leaves a half-written
    checkpoint behind, and ``--resume`` after a crash finds the last one that was reported saved."""
    with atomic_file(path) as fh:
        torch.save(state, fh)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise SystemExit(f"error: checkpoint {path} not found; train it first")
    return torch.load(path, map_location="cpu", weights_only=False)


def write_run_files(config: Config, stage_dir: Path) -> None:
    """Save the resolved config and provenance next to a stage's checkpoints."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, stage_dir / "config.yaml")
    (stage_dir / "provenance.json").write_text(json.dumps(provenance(config), indent=2) + "\n")
