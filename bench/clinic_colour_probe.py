"""Probe: does matching a clinic's colour statistics to the training set's help a shipped bundle?

Shades of Gray (per image) lowered the held-out figures: it also removes the colour differences
*between lesions*, which the model reads. A clinic-level transfer removes only what all of a
clinic's images share (its camera, light and white balance): the mean and spread of each L*a*b*
channel over the clinic's images (no labels needed) are mapped onto the training set's, the same
affine map for every image of that clinic (Reinhard et al. 2001, over a collection rather than one
image). Each source stands in for one clinic.

For every split and source the images are resized to the bundle's input size (as screening does),
transformed, written as lossless PNGs and screened by the bundle through `screen folder`; the
"identity" variant writes the same PNGs untransformed, so the comparison differs only in the
colours. Results land as ``OUT/<split>/<variant>.csv`` with the index's image names, for
`bench/paired_compare.py --candidate OUT/@lab_meanstd.csv --baseline OUT/@identity.csv`.

    python bench/clinic_colour_probe.py --index runs/starter2/index.csv --bundle engines/starter \\
        --out runs/starter2/colour_probe
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import run_screen  # noqa: E402
from screening.manifest import load_manifest  # noqa: E402
from training.data.dataset import load_resized  # noqa: E402

VARIANTS = ("identity", "lab_meanstd", "lab_mean_ab")


def to_lab(images: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> float32 L*a*b* (L in 0..100)."""
    flat = images.reshape(-1, 1, 3).astype(np.float32) / 255.0
    return cv2.cvtColor(flat, cv2.COLOR_RGB2Lab).reshape(images.shape)


def from_lab(lab: np.ndarray) -> np.ndarray:
    flat = cv2.cvtColor(lab.reshape(-1, 1, 3).astype(np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(flat * 255.0), 0, 255).astype(np.uint8).reshape(lab.shape)


def stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel L*a*b* mean and standard deviation over every pixel of every image."""
    lab = to_lab(images).reshape(-1, 3).astype(np.float64)
    return lab.mean(axis=0), lab.std(axis=0)


def transfer(images: np.ndarray, source: tuple, reference: tuple, variant: str) -> np.ndarray:
    """The same affine map of L*a*b* for every image of one clinic."""
    if variant == "identity":
        return images
    lab = to_lab(images).astype(np.float64)
    (mu_s, sd_s), (mu_r, sd_r) = source, reference
    if variant == "lab_meanstd":
        lab = (lab - mu_s) / np.maximum(sd_s, 1e-6) * sd_r + mu_r
    elif variant == "lab_mean_ab":  # the colour cast only: lightness and spreads kept
        lab[..., 1:] += (mu_r - mu_s)[1:]
    else:
        raise ValueError(variant)
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    return from_lab(lab.astype(np.float32))


def screened_as_indexed(folder: Path, rows: pd.DataFrame, bundle: Path, label: str) -> pd.DataFrame:
    """``folder``'s images (``images/`` and ``patients.csv``, written by a probe) screened by
    ``bundle`` through ``screen folder``, once (the results CSV is kept and reused), with each image
    named as the index names it (its id and its original file's suffix), so that starter_report's
    scorer and paired_compare read the results as a report's."""
    raw = folder / "results.csv"
    if not raw.exists():
        started = time.monotonic()
        run_screen(folder / "images", folder / "patients.csv", bundle, raw, batch_size=16)
        print(f"{label}: screened {len(rows)} images in {time.monotonic() - started:.0f} s")
    suffix = {i: Path(p).suffix.lower() for i, p in zip(rows["image_id"], rows["image_path"])}
    results = pd.read_csv(raw, encoding="utf-8-sig", dtype={"image": str})
    results["image"] = [f"{Path(n).stem}{suffix[Path(n).stem]}" for n in results["image"]]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--splits", nargs="+", default=["external", "test"])
    parser.add_argument("--reference-images", type=int, default=3000,
                        help="training images drawn for the reference statistics")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    index = pd.read_csv(args.index, dtype=str, keep_default_na=False)
    size = tuple(load_manifest(args.bundle).input_size)
    train = index[index["split"] == "train"].sample(n=args.reference_images, random_state=0)
    reference = stats(np.stack([load_resized(p, size) for p in train["image_path"]]))
    record = {"reference": [list(map(float, s)) for s in reference], "sources": {}}
    print(f"reference (L*a*b* mean, std): {np.round(reference[0], 2)}, {np.round(reference[1], 2)}")
    for split in args.splits:
        rows = index[index["split"] == split]
        pixels = {r.image_id: load_resized(r.image_path, size) for r in rows.itertuples()}
        by_source = {s: stats(np.stack([pixels[i] for i in part["image_id"]])) for s, part in rows.groupby("source")}
        for source, (mu, sd) in by_source.items():
            record["sources"][source] = [list(map(float, mu)), list(map(float, sd))]
            print(f"{split} {source}: mean {np.round(mu, 2)}, std {np.round(sd, 2)}")
        for variant in args.variants:
            folder = args.out / split / f"{variant}-images"
            (folder / "images").mkdir(parents=True, exist_ok=True)
            for source, part in rows.groupby("source"):
                ids = list(part["image_id"])
                out = transfer(np.stack([pixels[i] for i in ids]), by_source[source], reference, variant)
                for image_id, image in zip(ids, out):
                    cv2.imwrite(str(folder / "images" / f"{image_id}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            pd.DataFrame({"image": [f"{i}.png" for i in rows["image_id"]], "patient_id": rows["lesion_id"],
                          "age": rows["age"], "sex": rows["sex"], "site": rows["site"]}
                         ).to_csv(folder / "patients.csv", index=False)
            results = screened_as_indexed(folder, rows, args.bundle, f"{split} {variant}")
            results.to_csv(args.out / split / f"{variant}.csv", index=False)
    (args.out / "colour_stats.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
