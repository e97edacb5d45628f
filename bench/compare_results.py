"""Two results CSVs of the same images (e.g. --backend tensorrt vs onnxruntime): top-1 agreement, max |dp|, max |drisk|.

Rows are matched by the ``image`` column; only images that are ``ok`` in both count. Prints one
line per figure and the verdict against ``screen engines verify``'s limits, and writes JSON.

    python bench/compare_results.py runs/smoke/onnxruntime.csv runs/smoke/tensorrt.csv --out runs/smoke/compare.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from screening.engines.fidelity import MAX_DELTA_P, MIN_TOP1_AGREEMENT  # noqa: E402


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    """The ok rows of a results CSV by image."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return {row["image"]: row for row in csv.DictReader(handle) if row.get("status") == "ok"}


def compare(reference: dict[str, dict[str, str]], candidate: dict[str, dict[str, str]]) -> dict:
    """Figures over the images that are ok in both."""
    images = sorted(set(reference) & set(candidate))
    if not images:
        raise SystemExit("error: the two CSVs have no ok image in common")
    classes = [c for c in next(iter(reference.values())) if c.startswith("p_")]
    same = max_dp = max_drisk = 0.0
    changed = []
    for image in images:
        a, b = reference[image], candidate[image]
        same += a["prediction"] == b["prediction"]
        if a["prediction"] != b["prediction"]:
            changed.append(image)
        max_dp = max(max_dp, max(abs(float(a[c]) - float(b[c])) for c in classes))
        max_drisk = max(max_drisk, abs(float(a["risk"]) - float(b["risk"])))
    agreement = same / len(images)
    return {"images": len(images), "only_in_reference": len(set(reference) - set(candidate)),
            "only_in_candidate": len(set(candidate) - set(reference)), "top1_agreement": agreement,
            "max_delta_p": max_dp, "max_delta_risk": max_drisk, "top1_changed": changed[:20],
            "passed": agreement >= MIN_TOP1_AGREEMENT and max_dp <= MAX_DELTA_P,
            "limits": {"min_top1_agreement": MIN_TOP1_AGREEMENT, "max_delta_p": MAX_DELTA_P}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="results CSV taken as the reference (e.g. onnxruntime)")
    parser.add_argument("candidate", type=Path, help="results CSV compared with it (e.g. tensorrt)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    result = compare(read_rows(args.reference), read_rows(args.candidate))
    print(f"{args.candidate.name} vs {args.reference.name} on {result['images']} images: "
          f"top-1 agreement {100 * result['top1_agreement']:.2f}%, max |dp| {result['max_delta_p']:.4f}, "
          f"max |drisk| {result['max_delta_risk']:.4f} -> {'PASS' if result['passed'] else 'FAIL'} "
          f"(limits: >= {100 * MIN_TOP1_AGREEMENT:.0f}%, <= {MAX_DELTA_P})")
    if result["only_in_reference"] or result["only_in_candidate"]:
        print(f"  ok in one CSV only: {result['only_in_reference']} / {result['only_in_candidate']} images")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
