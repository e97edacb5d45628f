"""`python -m training <command>`: prepare data, train, evaluate and export bundles.

Commands:
  prepare      build a train/validation index CSV from HAM10000 / ISIC tables or a labels CSV
  segmenter    train the U-Net lesion segmenter
  masks        predict and cache the segmenter's masks for every indexed image
  classifier   train the fusion classifier (on cached predicted masks)
  ensemble     join trained classifier stages into one ensemble (mean of their probabilities)
  join         join exported bundles into one ensemble bundle (temperature and thresholds refitted)
  evaluate     metrics, calibration (temperature) and plots on the validation split
  export       write the ONNX bundle (engines/<name>/) and check ONNX Runtime parity
  ablation     the ablation table (five fusion variants) on frozen, cached backbone features
"""

from __future__ import annotations

import sys

COMMANDS = {
    "prepare": "training.data.prepare",
    "segmenter": "training.train_segmenter",
    "masks": "training.masks",
    "classifier": "training.train_classifier",
    "ensemble": "training.ensemble",
    "join": "training.join_bundles",
    "evaluate": "training.evaluate",
    "export": "training.export",
    "ablation": "training.ablation",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nRun `python -m training <command> --help` for a command's options.")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(COMMANDS[command])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
