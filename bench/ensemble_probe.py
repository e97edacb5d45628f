"""What averaging two bundles' probabilities would give, from results already screened.

An ensemble of two bundles costs twice the screening time (the 25 images/s floor allows one
Lite0 model), so it is worth building only if it clearly helps. This scores the mean of the
probabilities (and of the risk) of two `bench/starter_report.py` result CSVs per split, with the
same figures and lesion-grouped intervals as the report, beside each member alone. Nothing is
screened: it reads ``<report>/<split>/<name>.csv`` of each member.

    python bench/ensemble_probe.py --index runs/starter2/index.csv \\
        --member runs/starter2/report3/@starter@2.1.0rc1.csv \\
        --member runs/starter2/report4s/@starter@2.2.0rc1.csv \\
        --bundle runs/starter2/bundle-2.2.0rc1-sources

``--out REPORT/@NAME.csv`` also writes the average per split, so that ``bench/paired_compare.py``
can set it against one member with paired intervals (its threshold figures then use the
``--candidate-bundle``'s operating points, which were not fitted for the average: read only the
threshold-free figures).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from starter_report import _cell, figures  # noqa: E402
from training.data.split import group_keys  # noqa: E402

SHOWN = ("malignant_auc", "macro_auc", "balanced_accuracy", "melanoma_auc", "melanoma_vs_nevus_auc",
         "specificity_at_split_sens95")


def read_member(spec: str, split: str) -> pd.DataFrame:
    """``REPORT/@NAME.csv`` -> that report's results for ``split``, indexed by image."""
    report, _, name = spec.partition("/@")
    if not name:
        raise SystemExit(f"--member {spec!r}: expected REPORT_FOLDER/@RESULTS.csv")
    path = Path(report) / split / name
    return pd.read_csv(path, encoding="utf-8-sig", dtype={"image": str}).set_index("image")


def average(members: list[pd.DataFrame]) -> pd.DataFrame:
    """The members' mean probabilities and risk (the first member's other columns)."""
    first = members[0]
    if any(set(m.index) != set(first.index) for m in members[1:]):
        raise SystemExit("the members did not screen the same images")
    if any((m["status"] != "ok").any() for m in members):
        raise SystemExit("a member has images without an ok result: its probabilities are blank")
    columns = [c for c in first.columns if c.startswith("p_")] + ["risk"]
    out = first.copy()
    out[columns] = np.mean([m.loc[first.index, columns].to_numpy(np.float64) for m in members], axis=0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--member", action="append", required=True, metavar="REPORT/@RESULTS.csv")
    parser.add_argument("--bundle", type=Path, required=True,
                        help="a member's bundle: its class names (and which are malignant) score the average")
    parser.add_argument("--splits", nargs="+", default=["external", "test"])
    parser.add_argument("--out", type=Path, default=None, metavar="REPORT/@RESULTS.csv",
                        help="also write the average as a report's results (REPORT/<split>/RESULTS.csv), "
                             "for bench/paired_compare.py")
    args = parser.parse_args()
    if len(args.member) < 2:
        raise SystemExit("an ensemble needs at least two --member")
    index = pd.read_csv(args.index, dtype=str, keep_default_na=False)
    index["group"] = group_keys(index.replace("", np.nan)).to_numpy()
    print("| split | scored | " + " | ".join(SHOWN) + " |")
    print("|" + " --- |" * (2 + len(SHOWN)))
    for split in args.splits:
        rows = index[index["split"] == split].reset_index(drop=True)
        members = [read_member(spec, split) for spec in args.member]
        mean = average(members)
        if args.out is not None:
            report, _, name = str(args.out).partition("/@")
            (Path(report) / split).mkdir(parents=True, exist_ok=True)
            mean.reset_index().to_csv(Path(report) / split / name, index=False, encoding="utf-8-sig")
        for label, results in [*zip(args.member, members), ("mean of all", mean)]:
            figs = figures(results.reset_index(), rows, args.bundle)
            print(f"| {split} | {label} | " + " | ".join(_cell(figs[key]) for key in SHOWN) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
