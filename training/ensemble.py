"""`python -m training ensemble`: join trained classifier stages into one ensemble checkpoint.

The config names the member stages (``classifier.ensemble_of``: stage folders under ``out_dir``,
each with its ``best.pt``) and the ensemble's own ``classifier.stage_dir``. The command writes
``<out_dir>/<stage_dir>/best.pt``: every member's weights and what they share, so that
`evaluate` (temperature, operating points on the validation split) and `export` (one ONNX
classifier graph, training/models/ensemble.py) treat the ensemble as any classifier stage.

Members must screen alike, since the bundle has one segmenter, one set of pixels and one mask
threshold: the same classes, normalisation, metadata encoding, mask settings, pixels and
segmenter lineage. Anything else is refused, naming the member and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from screening.manifest import sha256_file

from .common import config_argument_parser, config_from_args, load_checkpoint, save_checkpoint, write_run_files
from .config import Config
from .lineage import MASKS_FROM, PIXELS

ENSEMBLE = "ensemble"  # checkpoint key: how the members are combined
MEMBERS = "members"  # checkpoint key: [{"stage", "sha256", "model", "model_config"}, ...]
# What every member must share: the runtime feeds all of them the same inputs.
SHARED = ("class_names", "mean", "std", "meta_dim")
SHARED_MODEL = ("mask_threshold", "mask_input_mode", "use_mask", "use_meta")
# Recorded by checkpoints since lineage was (training/lineage.py); older members lack them.
SHARED_IF_RECORDED = (PIXELS, MASKS_FROM)


class EnsembleError(ValueError):
    """Members that cannot be screened as one model."""


def member_paths(config: Config) -> list[Path]:
    names = list(config.classifier.ensemble_of)
    if len(names) < 2:
        raise EnsembleError(f"classifier.ensemble_of names {len(names)} stage(s): an ensemble needs at least two")
    if len(set(names)) != len(names):
        raise EnsembleError(f"classifier.ensemble_of names a stage twice: {names}")
    if config.classifier.stage_dir in names:
        raise EnsembleError(f"classifier.stage_dir {config.classifier.stage_dir!r} is also a member: "
                            f"the ensemble would overwrite a member's best.pt")
    return [config.out / name / "best.pt" for name in names]


def ensemble_state(members: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """The ensemble checkpoint from ``(path, loaded best.pt)`` of each member.

    Raises:
        EnsembleError: the members differ in something the runtime gives them all at once.
    """
    (first_path, first), *others = members
    for path, state in others:
        for key in SHARED:
            if state.get(key) != first.get(key):
                raise EnsembleError(f"{path} has {key} {state.get(key)!r}, {first_path} {first.get(key)!r}: "
                                    f"members must screen the same inputs")
        for key in SHARED_MODEL:
            mine, theirs = state["model_config"].get(key), first["model_config"].get(key)
            if mine != theirs:
                raise EnsembleError(f"{path} has model.{key} {mine!r}, {first_path} {theirs!r}: "
                                    f"members must screen the same inputs")
    shared: dict[str, Any] = {key: first[key] for key in SHARED}
    for key in SHARED_IF_RECORDED:
        recorded = {repr(state[key]): (path, state[key]) for path, state in members if state.get(key) is not None}
        if len(recorded) > 1:
            (a, va), (b, vb) = list(recorded.values())[:2]
            raise EnsembleError(f"{a} and {b} learnt from different {key}: {va} and {vb}")
        if recorded:
            shared[key] = next(iter(recorded.values()))[1]
    return {
        ENSEMBLE: "probability_mean",
        # The first member's model settings: the mask threshold and mode the manifest declares.
        "model_config": first["model_config"],
        **shared,
        MEMBERS: [{"stage": path.parent.name, "sha256": sha256_file(path), "model": state["model"],
                   "model_config": state["model_config"]} for path, state in members],
    }


def build(config: Config) -> Path:
    """Write the ensemble checkpoint of ``config``; returns its path."""
    paths = member_paths(config)
    members = [(path, load_checkpoint(path)) for path in paths]
    state = ensemble_state(members)
    stage_dir = config.classifier_dir
    write_run_files(config, stage_dir)
    save_checkpoint(stage_dir / "best.pt", state)
    return stage_dir / "best.pt"


def main(argv: list[str] | None = None) -> int:
    parser = config_argument_parser("ensemble", "Join trained classifier stages (classifier.ensemble_of) into one "
                                                "ensemble checkpoint that evaluate and export take as a classifier.")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    try:
        best = build(config)
    except EnsembleError as exc:
        raise SystemExit(f"error: {exc}") from exc
    names = ", ".join(config.classifier.ensemble_of)
    print(f"ensemble of {names} (mean of probabilities) written to {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
