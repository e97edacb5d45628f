"""Two bundles on the same images: each figure's difference with a paired, lesion-grouped interval.

Separate intervals of two bundles screened on the same lesions overlap even when one is better on
nearly every resample: the lesions that are hard for one are hard for the other. This scores both
bundles' results under the *same* bootstrap resamples (lesions, as `bench/starter_report.py`) and
reports candidate - baseline per figure, with its 95 % interval and the share of resamples in
which the candidate was ahead. Nothing is screened: it reads ``<report>/<split>/<name>.csv``.

    python bench/paired_compare.py --index runs/starter2/index.csv \\
        --baseline runs/starter2/report4s/@starter@2.2.0rc1.csv --baseline-bundle runs/starter2/bundle-2.2.0rc1-sources \\
        --candidate runs/starter2/report5_light/@starter@2.3.0rc2.csv --candidate-bundle runs/starter2/bundle-2.3.0rc2-lightmask
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ensemble_probe import read_member  # noqa: E402
from screening.validation.bootstrap import SEED, group_index, resample_weights  # noqa: E402
from starter_report import RESAMPLES, scorer  # noqa: E402
from training.data.split import group_keys  # noqa: E402

SHOWN = ("malignant_auc", "macro_auc", "balanced_accuracy", "melanoma_auc", "melanoma_vs_nevus_auc",
         "specificity_at_split_sens95")


def paired(baseline, candidate, groups: list[str], n: int = RESAMPLES, seed: int = SEED) -> dict[str, dict]:
    """candidate - baseline per figure: the difference, its percentile 95 % interval and the share
    of resamples where the candidate is ahead (ties and undefined resamples left out)."""
    ones = np.ones((1, len(groups)))
    base, cand = baseline(ones), candidate(ones)
    draws: dict[str, list[np.ndarray]] = {}
    for weights in resample_weights(group_index(groups), n, seed):
        b, c = baseline(weights), candidate(weights)
        for name in b.keys() & c.keys():
            draws.setdefault(name, []).append(c[name] - b[name])
    out = {}
    for name, blocks in draws.items():
        values = np.concatenate(blocks)
        values = values[~np.isnan(values)]
        delta = float(cand[name][0] - base[name][0])
        if len(values) < 0.95 * n or np.isnan(delta):
            out[name] = {"baseline": float(base[name][0]), "candidate": float(cand[name][0]), "delta": None}
            continue
        low, high = np.percentile(values, [2.5, 97.5])
        out[name] = {"baseline": round(float(base[name][0]), 4), "candidate": round(float(cand[name][0]), 4),
                     "delta": round(delta, 4), "ci95": [round(float(low), 4), round(float(high), 4)],
                     "candidate_ahead": round(float(np.mean(values > 0)), 3)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--baseline", required=True, metavar="REPORT/@RESULTS.csv")
    parser.add_argument("--baseline-bundle", type=Path, required=True)
    parser.add_argument("--candidate", required=True, metavar="REPORT/@RESULTS.csv")
    parser.add_argument("--candidate-bundle", type=Path, required=True)
    parser.add_argument("--splits", nargs="+", default=["external", "test"])
    parser.add_argument("--by-source", action="store_true", help="also each source of a split")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    index = pd.read_csv(args.index, dtype=str, keep_default_na=False)
    index["group"] = group_keys(index.replace("", np.nan)).to_numpy()
    report: dict[str, dict] = {}
    print("| split | rows | " + " | ".join(f"{name} (candidate - baseline)" for name in SHOWN) + " |")
    print("|" + " --- |" * (2 + len(SHOWN)))
    for split in args.splits:
        rows = index[index["split"] == split].reset_index(drop=True)
        parts = [("all", rows)]
        if args.by_source:
            parts += [(source, part.reset_index(drop=True)) for source, part in rows.groupby("source")]
        for label, part in parts:
            base, groups, _ = scorer(read_member(args.baseline, split).reset_index(), part, args.baseline_bundle)
            cand, groups_c, _ = scorer(read_member(args.candidate, split).reset_index(), part, args.candidate_bundle)
            if groups != groups_c:
                raise SystemExit("the two results do not cover the same images")
            figures = paired(base, cand, groups)
            report.setdefault(split, {})[label] = figures
            print(f"| {split} | {label} | " + " | ".join(_cell(figures.get(name)) for name in SHOWN) + " |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _cell(entry: dict | None) -> str:
    if not entry or entry.get("delta") is None:
        return "n too small"
    low, high = entry["ci95"]
    return (f"{entry['baseline']:.3f} -> {entry['candidate']:.3f}: {entry['delta']:+.3f} "
            f"({low:+.3f} to {high:+.3f}; ahead {entry['candidate_ahead']:.0%})")


if __name__ == "__main__":
    sys.exit(main())
