"""Screen an index's held-back splits with one or more bundles and report figures with 95 % CIs.

For each split (``test``: lesions of the training sources never used for any choice; ``external``:
whole sources held out from training) the images are screened by the real runtime (`screen
folder`, ONNX Runtime) exactly as a clinic would run it, and the ranked CSV is scored: malignant
AUC, macro AUC, balanced accuracy, melanoma AUC (one-vs-rest and against nevi only), and the
sensitivity/specificity at the bundle's own operating point (fitted on validation) and at the
split's own 95 %-sensitivity point. Intervals are percentile bootstraps that resample lesions
(the index's lesion, else patient, else image groups), overall and per source.

    python bench/starter_report.py --index runs/starter2/index.csv \\
        --bundle engines/starter --bundle runs/starter-1.1.0 --out runs/starter2/report
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import link_or_copy, run_screen  # noqa: E402
from screening.manifest import load_manifest  # noqa: E402
from screening.validation import metrics  # noqa: E402
from screening.validation.bootstrap import group_index, intervals  # noqa: E402
from training.data.split import group_keys  # noqa: E402

RESAMPLES = 1000


def build_folder(rows: pd.DataFrame, folder: Path, metadata: bool = True) -> None:
    """The split's images (hard links, else copies) and its patients.csv, as a clinic would give
    them; without ``metadata`` its age, sex and site are blank (a clinic that records none)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    names = []
    for row in rows.itertuples():
        name = f"{row.image_id}{Path(row.image_path).suffix.lower()}"
        if not (images / name).exists():
            link_or_copy(Path(row.image_path), images / name)
        names.append(name)
    fields = {name: rows[name] if metadata else "" for name in ("age", "sex", "site")}
    pd.DataFrame({"image": names, "patient_id": rows["group"], **fields}).to_csv(folder / "patients.csv", index=False)


def screen(folder: Path, bundle: Path, out: Path, batch_size: int, tta: str | None) -> pd.DataFrame:
    """The ranked CSV of the split's folder screened by ``bundle`` (kept, and reused when rerun)."""
    if not out.exists():
        for stale in out.parent.glob(out.name + ".*"):
            stale.unlink()
        run_screen(folder / "images", folder / "patients.csv", bundle, out, batch_size=batch_size,
                   extra=["--tta", tta] if tta else [])
    return pd.read_csv(out, encoding="utf-8-sig", dtype={"image": str})


def figures(results: pd.DataFrame, rows: pd.DataFrame, bundle: Path) -> dict[str, dict]:
    """Every headline figure with its lesion-grouped bootstrap interval."""
    compute, groups, n = scorer(results, rows, bundle)
    values = {k: float(v[0]) for k, v in compute(np.ones((1, len(groups)))).items()}
    cis = intervals(compute, group_index(groups), n=RESAMPLES)
    return {k: {"value": None if np.isnan(values[k]) else round(values[k], 4),
                "ci95": None if cis.get(k) is None else [round(x, 4) for x in cis[k]]} for k in values} | {"n": n}


def scorer(results: pd.DataFrame, rows: pd.DataFrame, bundle: Path):
    """(compute, groups, counts): ``compute(w)`` gives every figure under each row of bootstrap
    weights ``w`` (images in the index's order), ``groups`` the lesion of each image."""
    manifest = load_manifest(bundle)
    classes = manifest.class_names
    by_image = rows.assign(image=[f"{i}{Path(p).suffix.lower()}" for i, p in zip(rows["image_id"], rows["image_path"])])
    merged = by_image.merge(results, on="image", how="left", validate="one_to_one")
    if (merged["status"] != "ok").any():
        bad = merged.loc[merged["status"] != "ok", "image"].tolist()
        raise SystemExit(f"{len(bad)} images have no ok result, e.g. {bad[:3]}")
    probs = merged[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    truth = np.array([classes.index(label) for label in merged["label"]])
    risk = merged["risk"].to_numpy(np.float64)
    malignant = np.isin(truth, manifest.malignant_indices)
    predicted = probs.argmax(axis=1)
    mel, nv = classes.index("mel"), classes.index("nv")
    melnv = np.isin(truth, [mel, nv])
    point = manifest.operating_point() if manifest.operating_points else None
    flagged = risk >= point["threshold"] if point else None
    order = np.sort(risk[malignant])
    own95 = order[int(np.floor(0.05 * len(order)))] if len(order) else np.inf  # >= 95 % of malignant flagged

    def compute(w: np.ndarray) -> dict[str, np.ndarray]:
        out = {
            "malignant_auc": metrics.auc(malignant, risk, w),
            "balanced_accuracy": metrics.balanced_accuracy(truth, predicted, w, len(classes)),
            "accuracy": metrics.accuracy(truth, predicted, w),
            "melanoma_auc": metrics.auc(truth == mel, probs[:, mel], w),
            "melanoma_vs_nevus_auc": metrics.auc((truth == mel)[melnv], probs[melnv, mel], w[:, melnv]),
            "specificity_at_split_sens95": metrics.specificity(malignant, risk >= own95, w),
        }
        per_class = [metrics.auc(truth == k, probs[:, k], w) for k in range(len(classes))]
        present = [a for a in per_class if not np.all(np.isnan(a))]
        out["macro_auc"] = np.nanmean(np.stack(present), axis=0) if present else np.full(len(w), np.nan)
        if flagged is not None:
            out[f"sensitivity_at_{point['name']}"] = metrics.sensitivity(malignant, flagged, w)
            out[f"specificity_at_{point['name']}"] = metrics.specificity(malignant, flagged, w)
        return out

    return compute, list(merged["group"]), {
        "images": int(len(truth)), "lesions": int(merged["group"].nunique()),
        "malignant": int(malignant.sum()), "melanoma": int((truth == mel).sum())}


COLUMNS = [("malignant_auc", "malignant AUC"), ("macro_auc", "macro AUC"), ("balanced_accuracy", "bal. acc."),
           ("melanoma_auc", "melanoma AUC"), ("melanoma_vs_nevus_auc", "mel vs nv AUC"),
           ("sensitivity_at_sens95", "sens @ sens95"), ("specificity_at_sens95", "spec @ sens95"),
           ("specificity_at_split_sens95", "spec @ 95 % sens (own)")]


def _cell(entry: dict | None) -> str:
    if not entry:
        return "-"  # the bundle has no such operating point
    if entry["value"] is None:
        return "n too small"
    ci = entry["ci95"]
    return f"{entry['value']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def markdown(report: dict) -> str:
    """One table per split: a row per bundle and source, each figure with its 95 % interval."""
    lines = []
    splits = sorted({split for per_bundle in report.values() for split in per_bundle})
    for split in splits:
        lines += [f"### {split}", "", "| bundle | rows | images (mal.) | " + " | ".join(c[1] for c in COLUMNS) + " |",
                  "|" + " --- |" * (3 + len(COLUMNS))]
        for tag, per_bundle in report.items():
            for source, figs in per_bundle.get(split, {}).items():
                n = figs["n"]
                lines.append(f"| {tag} | {source} | {n['images']} ({n['malignant']}) | "
                             + " | ".join(_cell(figs.get(key)) for key, _ in COLUMNS) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, action="append", required=True)
    parser.add_argument("--splits", nargs="+", default=["test", "external"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tta", choices=["none", "flip", "flip4"], default=None,
                        help="test-time augmentation for every bundle (default: each bundle's own)")
    parser.add_argument("--no-metadata", action="store_true",
                        help="screen with blank age, sex and site: what the metadata adds, by difference")
    args = parser.parse_args()
    index = pd.read_csv(args.index, dtype=str, keep_default_na=False)
    index["group"] = group_keys(index.replace("", np.nan)).to_numpy()
    report: dict = {}
    for split in args.splits:
        rows = index[index["split"] == split].reset_index(drop=True)
        folder = args.out / (split + ("-no-metadata" if args.no_metadata else ""))
        build_folder(rows, folder, metadata=not args.no_metadata)
        for bundle in args.bundle:
            tag = load_manifest(bundle).tag + (f" tta={args.tta}" if args.tta else "") + \
                (" no-metadata" if args.no_metadata else "")
            started = time.monotonic()
            results = screen(folder, bundle, folder / f"{tag.replace(' ', '_')}.csv", args.batch_size, args.tta)
            print(f"{tag} {split}: screened {len(rows)} images in {time.monotonic() - started:.0f} s")
            entry = report.setdefault(tag, {}).setdefault(split, {})
            entry["all"] = figures(results, rows, bundle)
            for source, part in rows.groupby("source"):
                if len(part) >= 50:
                    entry[source] = figures(results, part.reset_index(drop=True), bundle)
            print(f"{tag} {split}: " + ", ".join(f"{k} {v['value']}" for k, v in entry["all"].items() if k != "n"))
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {args.out / 'report.json'} and report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
