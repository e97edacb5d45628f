"""What a checkpoint was trained from, beyond its weights, and the checks that keep later steps to it.

Weights mean something only with the pixels they were trained on (input size, preprocessing) and,
for the classifier, with the masks it learnt from (the segmenter checkpoint that predicted them).
Until these were recorded, `evaluate`, `export` and a later stage took them from whatever config
they were given: a forgotten `--set data.preprocessing=...` or a retrained segmenter gave a bundle
that screens other pixels or other masks than its classifier learnt, and the ONNX parity check
could not see it (both sides were fed the same wrong inputs). So checkpoints record them, and the
steps after training refuse a config or a segmenter that differs. Checkpoints from before they
were recorded are taken on trust, as before.

The same record makes `--resume` honest: resuming with other settings than the run started with
would train the rest of the run differently while the run files claimed one recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from screening.manifest import sha256_file

from .card import data_sha256
from .common import load_checkpoint
from .config import Config, to_dict

PIXELS = "pixels"  # checkpoint key: {"input_size": int, "preprocessing": [...]}
MASKS_FROM = "masks_from"  # classifier checkpoint key: {"segmenter_sha256": str}
SETTINGS = "settings"  # checkpoint key: the stage's training settings (resume checks)

# Settings a resumed run may change: how it runs, not what it trains (init_from is read only
# when a stage starts, and may name another folder once the run has moved).
RESUMABLE = {"data.workers", "classifier.tta", "classifier.init_from"}


class LineageError(ValueError):
    """A step was asked to use weights with other inputs than they were trained on."""


def pixels_of(config: Config) -> dict[str, Any]:
    """What the models of ``config`` see: the input size and the preprocessing steps."""
    return {"input_size": int(config.data.input_size),
            "preprocessing": [dict(step) for step in config.data.preprocessing]}


def check_pixels(state: dict[str, Any], config: Config, what: str, *, size: bool = True) -> None:
    """LineageError when ``state`` (a checkpoint) was trained on other pixels than ``config`` feeds.

    ``size=False`` lets the input size differ (a later stage may fine-tune at another size).
    """
    recorded = state.get(PIXELS)
    if recorded is None:
        return  # trained before pixels were recorded: the config is all there is
    wanted = pixels_of(config)
    problems = []
    if size and recorded.get("input_size") != wanted["input_size"]:
        problems.append(f"input size {recorded.get('input_size')} (this config: {wanted['input_size']})")
    if list(recorded.get("preprocessing") or []) != wanted["preprocessing"]:
        problems.append(f"preprocessing {recorded.get('preprocessing')} (this config: {wanted['preprocessing']})")
    if problems:
        raise LineageError(f"{what} was trained with " + " and ".join(problems)
                           + ": use the config it was trained with (data.input_size, data.preprocessing)")


def masks_record(segmenter_checkpoint: Path) -> dict[str, str]:
    """What a classifier records about the masks it trains on: the segmenter that predicted them."""
    if not segmenter_checkpoint.is_file():
        raise SystemExit(f"error: segmenter checkpoint {segmenter_checkpoint} not found: the classifier trains on "
                         f"its masks (classifier.masks: predicted), so train the segmenter first")
    return {"segmenter_sha256": sha256_file(segmenter_checkpoint)}


def check_masks_from(state: dict[str, Any], segmenter_checkpoint: Path, what: str) -> None:
    """LineageError when the classifier ``state`` learnt from another segmenter's masks than the one
    that would be exported beside it (the segmenter was retrained after the classifier)."""
    recorded = (state.get(MASKS_FROM) or {}).get("segmenter_sha256")
    if recorded is None:
        return  # trained on ground-truth masks, or before this was recorded
    now = sha256_file(segmenter_checkpoint)
    if recorded != now:
        raise LineageError(
            f"{what} learnt from the masks of segmenter sha256 {recorded[:12]}, but {segmenter_checkpoint} is "
            f"{now[:12]} (retrained since): retrain the classifier stage(s) on its masks, or restore that segmenter")


def stage_settings(config: Config, stage: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings that decide what a stage trains: seed, data, its own section (and ``extra``).

    The index is named by its content (``data_sha256``), not its path: a run folder copied to
    another machine resumes, a run pointed at other data does not.
    """
    full = to_dict(config)
    data = {**full["data"], "index": data_sha256(Path(config.data.index))}
    return {"seed": full["seed"], "data": data, stage: full[stage], **(extra or {})}


def changed_settings(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two ``stage_settings`` (sorted)."""
    changed = []
    for key in sorted(set(saved) | set(now)):
        name = f"{prefix}{key}"
        old, new = saved.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed.extend(changed_settings(old, new, f"{name}."))
        elif old != new:
            changed.append(name)
    return changed


def check_resume(last: Path, settings: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
    """Before a ``--resume``: say when there is nothing to resume, and refuse to continue a run
    with other settings than it started with (the epoch count excepted: a run may be lengthened).

    ``checkpoint`` is ``last`` loaded, or None when it does not exist.
    """
    if checkpoint is None:
        print(f"--resume: no {last} yet: starting from epoch 1")
        return
    saved = checkpoint.get(SETTINGS)
    if saved is None:
        return  # written before settings were recorded
    changed = [name for name in changed_settings(saved, settings)
               if name not in RESUMABLE and not name.endswith("optim.epochs")]
    if changed:
        shown = ", ".join(f"{name} ({_lookup(saved, name)!r} -> {_lookup(settings, name)!r})" for name in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise LineageError(f"{last} was trained with other settings: {shown}{more}. Resume with the settings the "
                           f"run started with, or start a new run (another out_dir or --run-name)")


def guard_resume(stage_dir: Path, settings: dict[str, Any], resume: bool, quiet: bool = False) -> None:
    """``check_resume`` for a stage folder, as a command-line error (``quiet``: no message when
    there is nothing to resume, for every torchrun rank but the first)."""
    if not resume:
        return
    last = stage_dir / "last.pt"
    if quiet and not last.is_file():
        return
    try:
        check_resume(last, settings, load_checkpoint(last) if last.is_file() else None)
    except LineageError as exc:
        raise SystemExit(f"error: {exc}") from exc


def _lookup(settings: dict[str, Any], dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
