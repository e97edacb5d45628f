"""Synthetic screening results with known truth, written as a real results CSV and journal.

A plain module (not conftest) so that docs and scripts can make the same data."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from screening.journal import JournalHeader
from screening.journal_lines import outcome_line
from screening.manifest import Manifest, load_manifest
from screening.results import Outcome, ResultRow, rank_rows, write_results_csv


@dataclass
class Synthetic:
    results: Path  # results CSV (journal beside it)
    labels: Path  # labels CSV
    truth: np.ndarray  # class index per image, in image order
    probabilities: np.ndarray  # (N, C) rounded to 6 decimals, as screening writes them
    images: list[str]
    patients: list[str]
    manifest: Manifest
    manifest_dir: Path  # the bundle that "made" them


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def write_synthetic(folder: Path, bundle: Path, n: int = 400, seed: int = 0, sharpness: float = 3.0,
                    class_share: tuple[float, ...] | None = None, images_per_patient: int = 2,
                    diagnoses: dict[int, str] | None = None, extra_label_rows: int = 0) -> Synthetic:
    """Results whose true classes are known: logits = signal on the true class + noise, times
    ``sharpness`` (> 1 makes the scores over-confident, as a model meeting another clinic's
    camera is)."""
    manifest = load_manifest(bundle)
    rng = np.random.default_rng(seed)
    c = len(manifest.classes)
    share = np.array(class_share or [1 / c] * c)
    truth = rng.choice(c, size=n, p=share / share.sum())
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), truth] += 1.5
    # Rounded as screening rounds them (pipeline.postprocess): what the CSV and journal hold.
    probabilities = np.round(softmax(logits * sharpness), 6)
    images = [f"site{i % 3}/img_{i:04d}.jpg" for i in range(n)]
    patients = [f"P{i // images_per_patient:04d}" for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / "results.csv"
    outcomes = []
    for i, image in enumerate(images):
        p = tuple(float(x) for x in probabilities[i])
        outcomes.append(Outcome(image=image, fingerprint="f", status="ok", probabilities=p,
                                risk=float(sum(p[k] for k in manifest.malignant_indices)),
                                prediction=manifest.class_names[int(np.argmax(p))], confidence=max(p),
                                lesion_area=0.3))
    write_results_csv(results, rank_rows(ResultRow(o, patients[i]) for i, o in enumerate(outcomes)), manifest)
    header = json.loads(JournalHeader.of(manifest).to_json())
    lines = [json.dumps(header)] + [outcome_line(o) for o in outcomes]  # as screening writes them
    (folder / "results.csv.journal").write_text("\n".join(lines) + "\n", encoding="utf-8")
    names = diagnoses or {i: spec.name for i, spec in enumerate(manifest.classes)}
    labels = folder / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "diagnosis", "patient_id", "age", "sex", "site", "source"])
        for i, image in enumerate(images):
            writer.writerow([Path(image).stem, names[int(truth[i])], patients[i], 20 + (i % 7) * 10,
                             ("male", "female")[i % 2], ("back", "face", "")[i % 3], f"clinic{i % 2}"])
        for j in range(extra_label_rows):
            writer.writerow([f"ghost_{j}", "nv", "", "", "", "", ""])
    return Synthetic(results, labels, truth, probabilities, images, patients, manifest, bundle)
