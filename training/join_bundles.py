"""`python -m training join`: join exported bundles into one bundle whose classifier is their ensemble.

`python -m training ensemble` joins classifier stages that are still on disk as PyTorch
checkpoints. A bundle that has shipped may be all that is left of a model (its checkpoints
deleted, its segmenter retrained since), yet be the member an ensemble needs: two independently
trained models of comparable strength rank better together than either alone, and the best pair
measured so far is a shipped bundle and a newer recipe (docs/results.md). This command joins
bundles as they are, at the ONNX level:

- one classifier graph that runs every member's classifier on the same inputs and outputs the
  log of the mean of their probabilities (each at temperature 1, exactly as
  training/models/ensemble.py does), and the mean of their attention maps;
- one segmenter, taken from the member named by ``--segmenter-from``;
- a temperature and operating points fitted anew on the validation split of the training index,
  screened through the joined bundle itself with ONNX Runtime (the runtime clinics use), since
  the members' own were fitted on other outputs and, for members other than the segmenter's, on
  other masks.

Members must screen alike (classes, pixels, normalisation, metadata encoding, mask settings,
model inputs and outputs) and must have been trained on the given index: otherwise the
validation split that fits the ensemble's temperature and thresholds could be training data of
a member. Everything else is refused, naming the member and the field.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import TensorProto, helper, numpy_helper

from screening.backends.onnxrt import OnnxRuntimeBackend
from screening.bundle_store import BundleExists, check_destination, staged_bundle
from screening.manifest import ATTENTION_OUTPUT, Manifest, fields_required, load_manifest, save_manifest, sha256_file
from screening.preprocess import softmax

from .calibration import expected_calibration_error, fit_temperature
from .card import REPO_ROOT, commit_label, data_sha256, git_state, package_versions
from .data.dataset import runtime_inputs
from .evaluate import validation_operating_points
from .export import fold_for_runtime, headline
from .metrics import classification_report
from .models.ensemble import MIN_PROBABILITY

# What every member must share, as the manifest names it: the runtime gives them all the same
# pixels, masks and metadata, and reads the same outputs.
SHARED_FIELDS = ("classes", "input_size", "metadata", "mask_threshold", "mask_input_mode", "preprocessing",
                 "attention_queries", "tta")
SHARED_CLASSIFIER_FIELDS = ("mean", "std", "inputs", "outputs")
BATCH = 32
PARITY_IMAGES = 16
PARITY_ATOL = 1e-4  # the joined graph against the members run one by one: same kernels, same order


class JoinError(ValueError):
    """Bundles that cannot be joined into one."""


def check_members(manifests: Sequence[Manifest], names: Sequence[str], index: Path) -> None:
    """Raise JoinError unless the members screen alike and were trained on ``index``."""
    if len(manifests) < 2:
        raise JoinError(f"joining needs at least two bundles, got {len(manifests)}")
    first, first_name = manifests[0].to_dict(), names[0]
    for manifest, name in zip(manifests[1:], names[1:]):
        data = manifest.to_dict()
        pairs = [(key, data.get(key), first.get(key)) for key in SHARED_FIELDS]
        pairs += [(f"classifier.{key}", data["classifier"].get(key), first["classifier"].get(key))
                  for key in SHARED_CLASSIFIER_FIELDS]
        for field, mine, theirs in pairs:
            if mine != theirs:
                raise JoinError(f"{name} has {field} {_short(mine)}, {first_name} {_short(theirs)}: "
                                f"members must screen the same inputs")
    expected = data_sha256(index)
    for manifest, name in zip(manifests, names):
        trained_on = (manifest.training or {}).get("data_index_sha256")
        if trained_on != expected:
            raise JoinError(f"{name} was trained on another index (data_index_sha256 {str(trained_on)[:12]}, "
                            f"{index} is {str(expected)[:12]}): its validation split may be that member's "
                            f"training data, so it cannot fit the ensemble's temperature and thresholds")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def join_classifiers(models: Sequence[onnx.ModelProto]) -> onnx.ModelProto:
    """One graph: every member on the same inputs; ``logits`` = log of their mean probability.

    Member tensors are renamed ``member<i>/...``; the graph inputs (image, mask, meta) are
    shared. ``attention``, when every member has it, is the mean of their maps.
    """
    opsets = {next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None) for m in models}
    if len(opsets) != 1:
        raise JoinError(f"member classifiers use different ONNX opsets {sorted(map(str, opsets))}")
    graphs = [onnx.compose.add_prefix_graph(m.graph, f"member{i}/", rename_inputs=False)
              for i, m in enumerate(models)]
    first = models[0].graph
    nodes, initializers, value_info = [], [], []
    for graph in graphs:
        nodes += graph.node
        initializers += graph.initializer
        value_info += graph.value_info
    outputs = {o.name: o for o in first.output}
    probabilities = []
    for i in range(len(models)):
        probabilities.append(f"member{i}/probability")
        nodes.append(helper.make_node("Softmax", [f"member{i}/logits"], [probabilities[-1]], axis=1,
                                      name=f"member{i}/softmax"))
    floor = numpy_helper.from_array(np.array(MIN_PROBABILITY, dtype=np.float32), "ensemble/min_probability")
    initializers.append(floor)
    nodes += [
        helper.make_node("Mean", probabilities, ["ensemble/mean"], name="ensemble/mean"),
        # a class no member believes in gets a very low, finite logit, not log(0) = -inf
        helper.make_node("Max", ["ensemble/mean", floor.name], ["ensemble/floored"], name="ensemble/floor"),
        helper.make_node("Log", ["ensemble/floored"], ["logits"], name="ensemble/log"),
    ]
    graph_outputs = [outputs["logits"]]
    if ATTENTION_OUTPUT in outputs and all(ATTENTION_OUTPUT in {o.name for o in m.graph.output} for m in models):
        nodes.append(helper.make_node("Mean", [f"member{i}/{ATTENTION_OUTPUT}" for i in range(len(models))],
                                      [ATTENTION_OUTPUT], name="ensemble/attention"))
        graph_outputs.append(outputs[ATTENTION_OUTPUT])
    graph = helper.make_graph(nodes, "ensemble", list(first.input), graph_outputs, initializers,
                              value_info=value_info)
    opset_imports = {o.domain: o for m in models for o in m.opset_import}
    joined = helper.make_model(graph, opset_imports=list(opset_imports.values()),
                               producer_name="training.join_bundles")
    joined.ir_version = max(m.ir_version for m in models)
    onnx.checker.check_model(joined)
    return joined


def expected_logits(member_logits: Sequence[np.ndarray]) -> np.ndarray:
    """What the joined graph must output: log of the members' mean probability (numpy)."""
    mean = np.mean([softmax(x) for x in member_logits], axis=0)
    return np.log(np.maximum(mean, MIN_PROBABILITY))


def validation_rows(index: Path) -> pd.DataFrame:
    frame = pd.read_csv(index, dtype=str, keep_default_na=False)
    rows = frame[frame["split"] == "val"].reset_index(drop=True)
    if rows.empty:
        raise JoinError(f"{index} has no validation rows to fit the ensemble's temperature on")
    return rows


def screen_validation(bundle: Path, manifest: Manifest, rows: pd.DataFrame, member_classifiers: Sequence[Path],
                      member_segmenter: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Logits of the joined bundle on ``rows`` through ONNX Runtime, and the parity record of the
    joined graphs against the members' own files run one by one on the first images."""
    size = tuple(manifest.input_size)
    logits, parity = [], {}
    with OnnxRuntimeBackend(bundle, manifest) as backend:
        for start in range(0, len(rows), BATCH):
            part = rows.iloc[start:start + BATCH]
            inputs = runtime_inputs(part, size, manifest.preprocessing, manifest.metadata,
                                    (manifest.segmenter.mean, manifest.segmenter.std),
                                    (manifest.classifier.mean, manifest.classifier.std))
            seg, cls, meta = inputs["seg_image"], inputs["cls_image"], inputs["meta"]
            outputs = backend.run_batch(seg, cls, meta)
            logits.append(outputs.logits)
            if start == 0:
                feed = {"image": cls[:PARITY_IMAGES], "mask": outputs.mask[:PARITY_IMAGES],
                        "meta": meta[:PARITY_IMAGES]}
                parity = _parity(member_classifiers, feed, outputs.logits[:PARITY_IMAGES])
                parity.update(_segmenter_parity(member_segmenter, seg[:PARITY_IMAGES], outputs.mask[:PARITY_IMAGES]))
            if sys.stdout.isatty():
                print(f"\rvalidation: {min(start + BATCH, len(rows))}/{len(rows)} images", end="", flush=True)
    print(f"\rvalidation: {len(rows)} images screened through the joined bundle")
    return np.concatenate(logits), parity


def _parity(member_classifiers: Sequence[Path], feed: dict[str, np.ndarray], joined: np.ndarray) -> dict[str, Any]:
    members = []
    for path in member_classifiers:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        members.append(session.run(["logits"], feed)[0])
    delta = float(np.abs(softmax(joined) - softmax(expected_logits(members))).max())
    if delta > PARITY_ATOL:
        raise JoinError(f"the joined classifier's probabilities differ from the mean of its members' by {delta:.2e} "
                        f"(tolerance {PARITY_ATOL})")
    return {"images": int(len(feed["meta"])), "max_abs_prob_delta_vs_members": delta, "tolerance": PARITY_ATOL}


def _segmenter_parity(member_segmenter: Path, image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    session = ort.InferenceSession(str(member_segmenter), providers=["CPUExecutionProvider"])
    delta = float(np.abs(session.run(["mask"], {"image": image})[0] - mask).max())
    if delta > PARITY_ATOL:
        raise JoinError(f"the bundle's segmenter differs from its member's file by {delta:.2e} (tolerance {PARITY_ATOL})")
    return {"max_abs_mask_delta_vs_member": delta}


def fit_on_validation(logits: np.ndarray, rows: pd.DataFrame, manifest: Manifest, index: Path) -> dict[str, Any]:
    """Temperature, operating points and metrics, as `training evaluate` reports them."""
    names = manifest.class_names
    unknown = sorted(set(rows["label"]) - set(names))
    if unknown:
        raise JoinError(f"validation labels {unknown} are not among the bundle's classes {names}")
    labels = np.array([names.index(label) for label in rows["label"]])
    temperature = fit_temperature(logits, labels)
    raw, calibrated = softmax(logits), softmax(logits, temperature)
    malignant = manifest.malignant_indices
    return {
        "split": "val", "images": int(len(labels)), "classes": names, "temperature": temperature,
        "ece_before": expected_calibration_error(raw, labels),
        "ece_after": expected_calibration_error(calibrated, labels),
        "uncalibrated": classification_report(labels, raw, names, malignant),
        "calibrated": classification_report(labels, calibrated, names, malignant),
        "operating_points": validation_operating_points(calibrated, labels, malignant,
                                                        f"validation split of {index}"),
    }


def join(members: Sequence[Path], index: Path, out: Path, version: str, *, segmenter_from: int = 0,
         name: str | None = None, changelog: Sequence[str] = (), force: bool = False,
         release: bool = False) -> Path:
    """Join the bundles ``members`` into one at ``out``; returns ``out``.

    Raises:
        JoinError: the members cannot be joined, or the joined graph is not their mean.
        BundleExists: ``out`` (or name@version beside it) exists and ``force`` is not set.
    """
    members = [Path(m) for m in members]
    manifests = [load_manifest(m) for m in members]  # verifies every file's sha256
    tags = [m.tag for m in manifests]
    check_members(manifests, tags, index)
    if not 0 <= segmenter_from < len(members):
        raise JoinError(f"--segmenter-from {segmenter_from}: there are {len(members)} members (0-{len(members) - 1})")
    git = git_state(REPO_ROOT, exclude=out)
    if release and not git["clean"]:
        raise JoinError(f"a release bundle needs a clean git commit: {git['modified_count']} tracked files differ "
                        f"from {git['commit'][:12]}")
    first, source = manifests[0], manifests[segmenter_from]
    name = name or first.name
    tag = f"{name}@{version}"
    check_destination(out, tag, force)
    rows = validation_rows(index)
    classifier_paths = [m / manifest.classifier.file for m, manifest in zip(members, manifests)]
    with staged_bundle(out, tag, force) as staging:
        joined = fold_for_runtime(join_classifiers([onnx.load(str(path)) for path in classifier_paths]))
        onnx.save(joined, str(staging / first.classifier.file))
        segmenter = members[segmenter_from] / source.segmenter.file
        onnx.save(fold_for_runtime(onnx.load(str(segmenter))), str(staging / source.segmenter.file))
        architecture = (f"mean of the probabilities of {len(members)} classifiers ("
                        + "; ".join(f"{t}: {m.classifier.architecture}" for t, m in zip(tags, manifests)) + ")")
        card = copy.deepcopy(first.card) or {}
        card["changelog"] = [*changelog, *card.get("changelog", [])]
        card["package_versions"] = package_versions()
        manifest = replace(
            first, name=name, version=version, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            classifier=replace(first.classifier, sha256=sha256_file(staging / first.classifier.file),
                               architecture=architecture),
            segmenter=replace(source.segmenter, sha256=sha256_file(staging / source.segmenter.file)),
            temperature=1.0, operating_points=[], card=card, derived={},
            # a new bundle, not the first member read back from its folder
            source=None, as_loaded=None, folder=None)
        save_manifest(manifest, staging)  # provisional: screens the validation split at temperature 1
        logits, parity = screen_validation(staging, manifest, rows, classifier_paths, segmenter)
        evaluation = fit_on_validation(logits, rows, manifest, index)
        training = {
            "joined_from": [{"bundle": t, "path": str(p), "classifier_sha256": m.classifier.sha256,
                             "segmenter_sha256": m.segmenter.sha256, "temperature": m.temperature,
                             "evaluation": (m.training or {}).get("evaluation")}
                            for t, p, m in zip(tags, members, manifests)],
            "segmenter_from": tags[segmenter_from],
            "segmenter_evaluation": ((source.training or {}).get("evaluation") or {}).get("segmentation"),
            "data_index": str(index), "data_index_sha256": data_sha256(index),
            "evaluation": headline(evaluation), "onnx_parity": parity,
            "git_commit": commit_label(git), "git": git, "release": release,
            "created": manifest.created,
        }
        manifest = replace(manifest, temperature=float(evaluation["temperature"]),
                           operating_points=list(evaluation["operating_points"]), training=training)
        manifest = replace(manifest, requires=fields_required(manifest))
        manifest.check()
        save_manifest(manifest, staging)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training join",
        description="Join exported bundles into one bundle whose classifier is the mean of their probabilities; "
                    "temperature and operating points are fitted anew on the index's validation split.")
    parser.add_argument("members", nargs="+", type=Path, metavar="BUNDLE", help="bundle folders to join (two or more)")
    parser.add_argument("--index", type=Path, required=True,
                        help="the training index every member was trained on (its val split fits the ensemble)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the joined bundle")
    parser.add_argument("--version", required=True, help="the joined bundle's version")
    parser.add_argument("--name", help="the joined bundle's name (default: the first member's)")
    parser.add_argument("--segmenter-from", type=int, default=0, metavar="I",
                        help="which member's segmenter the bundle screens with (0 = the first; default 0)")
    parser.add_argument("--changelog", action="append", default=[], metavar="TEXT",
                        help="a changelog line for the card, before the first member's (repeatable)")
    parser.add_argument("--force", action="store_true", help="replace an existing folder or name@version")
    parser.add_argument("--release", action="store_true", help="refuse unless the working tree is a clean git commit")
    args = parser.parse_args(argv)
    try:
        out = join(args.members, args.index, args.out, args.version, segmenter_from=args.segmenter_from,
                   name=args.name, changelog=args.changelog, force=args.force, release=args.release)
    except (JoinError, BundleExists) as exc:
        raise SystemExit(f"error: {exc}") from exc
    manifest = load_manifest(out)
    evaluation = manifest.training["evaluation"]
    print(f"bundle written to {out} ({manifest.tag}): validation malignant AUC {evaluation['malignant_auc']:.3f}, "
          f"macro AUC {evaluation['macro_auc']:.3f}, balanced accuracy {evaluation['balanced_accuracy']:.3f}, "
          f"temperature {manifest.temperature:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
