"""Does `screen folder` reproduce the PyTorch evaluation? Metrics of both on the validation split.

Copies the validation images of a training run into a temporary folder, writes a patients.csv
from the index (age, sex, site), screens it with the exported bundle through the real CLI (ONNX
Runtime), recomputes the metrics from results.csv and prints them beside the ones `python -m
training evaluate` wrote (calibrated). The runtime and training agree when every metric is
within --tolerance (default 0.005).

    python bench/runtime_agreement.py --config configs/starter_ham10000.yaml
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.config import load_config  # noqa: E402
from training.data.classes import get_class_config  # noqa: E402
from training.evaluate import eval_dir  # noqa: E402
from training.export import bundle_dir  # noqa: E402
from training.metrics import classification_report  # noqa: E402

METRICS = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
           "macro_auc", "malignant_auc", "melanoma_auc")


def screen_validation(index: pd.DataFrame, bundle: Path, workdir: Path) -> pd.DataFrame:
    """Screen the validation images with the CLI; returns results.csv joined to the index."""
    images = workdir / "images"
    images.mkdir()
    rows = []
    for row in index.itertuples():
        name = f"{row.image_id}{Path(row.image_path).suffix}"
        shutil.copy(row.image_path, images / name)
        rows.append({"image": name, "age": row.age, "sex": row.sex, "site": row.site})
    pd.DataFrame(rows).to_csv(workdir / "patients.csv", index=False)
    out = workdir / "results.csv"
    command = [str(REPO / ".venv" / "bin" / "screen"), "folder", str(images), "--meta",
               str(workdir / "patients.csv"), "--out", str(out), "--bundle", str(bundle),
               "--backend", "onnxruntime", "--quiet"]
    subprocess.run(command, check=True)
    results = pd.read_csv(out, dtype={"image": str}, encoding="utf-8-sig")
    results["image_id"] = results["image"].map(lambda s: Path(s).stem)
    return index.merge(results, on="image_id", how="left", validate="one_to_one")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the training config of the bundle")
    parser.add_argument("--bundle", type=Path, help="bundle folder (default: the config's export folder)")
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "runtime_agreement.json")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    bundle = args.bundle or bundle_dir(config)
    classes = get_class_config(config.data.classes)
    index = pd.read_csv(config.data.index, dtype=str, keep_default_na=False)
    val = index[index["split"] == "val"].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        joined = screen_validation(val, bundle, Path(tmp))
    failed = joined["status"] != "ok"
    if failed.any():
        print(f"{int(failed.sum())} validation images were not screened ok", file=sys.stderr)
        return 1
    labels = np.array([classes.class_names.index(x) for x in joined["label"]])
    probs = joined[[f"p_{name}" for name in classes.class_names]].to_numpy(dtype=np.float64)
    runtime = classification_report(labels, probs, classes.class_names, classes.malignant_indices)
    training = json.loads((eval_dir(config) / "evaluation.json").read_text())["calibrated"]

    table = []
    print(f"{'metric':<20}{'training (PyTorch)':>20}{'screen (ONNX Runtime)':>24}{'|delta|':>10}")
    for key in METRICS:
        a, b = training.get(key), runtime.get(key)
        delta = None if a is None or b is None else abs(a - b)
        table.append({"metric": key, "training": a, "screen": b, "delta": delta})
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        print(f"{key:<20}{fmt(a):>20}{fmt(b):>24}{fmt(delta):>10}")
    worst = max(row["delta"] for row in table if row["delta"] is not None)
    agree = worst <= args.tolerance
    print(f"images: {len(joined)}; largest |delta| {worst:.4f} -> "
          f"{'AGREE' if agree else 'DISAGREE'} within {args.tolerance}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"images": len(joined), "bundle": str(bundle), "table": table,
                                    "max_delta": worst, "tolerance": args.tolerance, "agree": agree},
                                   indent=2) + "\n")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
