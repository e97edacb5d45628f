"""`python -m training export`: write a model bundle and prove ONNX Runtime reproduces PyTorch.

The bundle (``engines/<name>/``) holds ``segmenter.onnx`` (image -> lesion probability map),
``classifier.onnx`` (image, mask, meta -> logits; the mask threshold is inside the graph) and
``manifest.json``. Both graphs are FP32 with a dynamic batch axis. Export fails when ONNX
Runtime's outputs differ from PyTorch's by more than ``export.parity_atol`` on real
validation images.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from screening.manifest import ATTENTION_OUTPUT, Manifest, ModelSpec, fields_required, save_manifest, sha256_file
from screening.bundle_store import BundleExists, check_destination, staged_bundle
from screening.engines.shape_tensors import fold_static_shapes
from screening.metadata import DEFAULT_VOCABULARY
from screening.preprocess import softmax

from .card import REPO_ROOT, commit_label, git_state, model_card
from .common import config_argument_parser, config_from_args, provenance, read_index, split
from .config import Config
from .data.classes import get_class_config
from .evaluate import check_lineage, checkpoint_record, eval_dir
from .gates import GateError, check_gates
from .data.dataset import runtime_inputs
from .inference import SegmenterWithSigmoid, load_classifier, load_segmenter
from .lineage import LineageError, check_pixels
from .masks import segmenter_checkpoint
from .models.fusion import FusionClassifier, WithAttention


class ParityError(RuntimeError):
    """ONNX Runtime does not reproduce PyTorch within the stated tolerance."""


class EvaluationMismatch(RuntimeError):
    """evaluation.json measured other weights than the checkpoint being exported."""


class ReleaseError(RuntimeError):
    """A release bundle was asked for from a working tree that differs from its git commit."""


def bundle_dir(config: Config) -> Path:
    return Path(config.export.out_dir) if config.export.out_dir else REPO_ROOT / "engines" / config.export.name


def export_onnx(model: torch.nn.Module, inputs: dict[str, torch.Tensor], output: str | list[str], path: Path,
                opset: int) -> None:
    """TorchScript-based exporter: fast here, one opset for every op, dynamic batch axis.

    ``output`` names the model's output, or its outputs in the order ``forward`` returns them.
    """
    names = list(inputs)
    outputs = [output] if isinstance(output, str) else list(output)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(
            model, tuple(inputs.values()), str(path), input_names=names, output_names=outputs,
            dynamic_axes={name: {0: "N"} for name in [*names, *outputs]}, opset_version=opset,
            do_constant_folding=True, dynamo=False,
        )
    graph = fold_for_runtime(onnx.load(str(path)))
    onnx.save(graph, str(path))
    found = [i.name for i in graph.graph.input]
    if found != names:
        raise RuntimeError(f"{path.name}: exporter produced inputs {found}, expected {names}")
    found = [o.name for o in graph.graph.output]
    if found != outputs:
        raise RuntimeError(f"{path.name}: exporter produced outputs {found}, expected {outputs}")


def fold_for_runtime(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every computation that does not depend on the batch size folded into constants.

    timm's TF-style "same" padding (the EfficientNet-Lite backbones) computes each convolution's
    padding from the input's shape while the graph runs: Shape, arithmetic and Pad nodes that
    ONNX Runtime can neither skip nor fuse into the convolution, and that force layout reorders
    around every padded convolution. The input size is fixed by the manifest, so all of it is
    constant; folded, ONNX Runtime fuses the padding into the convolutions. Measured on this
    2-core CPU (batch 8): starter@2.3.0's classifier 29.6 -> 18.7 ms per image, its segmenter 16.2
    -> 12.0. The arithmetic is unchanged; the export's parity check runs on the folded graph. It
    is the folding `screen engines build` applies before its FP16 conversion (a second pass finds
    nothing left to fold).
    """
    folded, _ = fold_static_shapes(model)
    onnx.checker.check_model(folded)
    return folded


def classifier_for_export(cls: FusionClassifier) -> tuple[torch.nn.Module, list[str]]:
    """The module to export and its output names: with cross-attention, the attention weights
    of the queries over the image positions become a second output (the report's heat maps)."""
    if cls.attention_queries:
        return WithAttention(cls).eval(), ["logits", ATTENTION_OUTPUT]
    return cls, ["logits"]


def _shape(tensor: torch.Tensor) -> list[Any]:
    return ["N", *tensor.shape[1:]]


def parity_inputs(config: Config, seg_state: dict, cls_state: dict, count: int) -> dict[str, np.ndarray]:
    """Real validation images (and their metadata) preprocessed exactly as the runtime does."""
    index = split(read_index(config), "val").head(count)
    size = config.data.input_size
    return runtime_inputs(index, (size, size), config.data.preprocessing, DEFAULT_VOCABULARY,
                          (seg_state["mean"], seg_state["std"]), (cls_state["mean"], cls_state["std"]))


def check_parity(seg: torch.nn.Module, cls: torch.nn.Module, seg_path: Path, cls_path: Path,
                 feed: dict[str, np.ndarray], atol: float) -> dict[str, float]:
    """Max |delta| of mask probabilities and class probabilities, PyTorch vs ONNX Runtime."""
    with torch.no_grad():
        torch_mask = seg(torch.from_numpy(feed["seg_image"])).numpy()
        torch_logits = cls(torch.from_numpy(feed["cls_image"]), torch.from_numpy(torch_mask),
                           torch.from_numpy(feed["meta"])).numpy()
    options = ort.SessionOptions()
    seg_sess = ort.InferenceSession(str(seg_path), options, providers=["CPUExecutionProvider"])
    cls_sess = ort.InferenceSession(str(cls_path), options, providers=["CPUExecutionProvider"])
    ort_mask = seg_sess.run(["mask"], {"image": feed["seg_image"]})[0]
    # Feed the classifier the same mask on both sides, so the comparison isolates each model.
    cls_feed = {"image": feed["cls_image"], "mask": torch_mask, "meta": feed["meta"]}
    ort_logits = cls_sess.run(["logits"], cls_feed)[0]
    result = {
        "images": int(len(feed["meta"])),
        "max_abs_mask_delta": float(np.abs(ort_mask - torch_mask).max()),
        "max_abs_prob_delta": float(np.abs(softmax(ort_logits) - softmax(torch_logits)).max()),
        "max_abs_logit_delta": float(np.abs(ort_logits - torch_logits).max()),
        "tolerance": atol,
    }
    deltas = ["max_abs_mask_delta", "max_abs_prob_delta"]
    if ATTENTION_OUTPUT in [o.name for o in cls_sess.get_outputs()]:
        with torch.no_grad():
            _, torch_attention = cls.forward_with_attention(
                *(torch.from_numpy(cls_feed[name]) for name in ("image", "mask", "meta")))
        ort_attention = cls_sess.run([ATTENTION_OUTPUT], cls_feed)[0]
        result["max_abs_attention_delta"] = float(np.abs(ort_attention - torch_attention.numpy()).max())
        deltas.append("max_abs_attention_delta")
    if any(result[key] > atol for key in deltas):
        raise ParityError(f"ONNX Runtime differs from PyTorch beyond {atol}: {json.dumps(result)}")
    return result


def export_bundle(config: Config, force: bool = False, require: tuple[str, ...] = (),
                  release: bool = False) -> Path:
    """Export the trained models of ``config`` into a verified bundle; returns its folder.

    The bundle is built in a temp folder beside its destination and moved into place only when
    complete and verified (screening.bundle_store). An existing folder, or another bundle with
    the same name@version beside it, is replaced only with ``force``, by an atomic swap.

    Args:
        require: quality gates such as "malignant_auc>=0.90" (training.gates), checked first.
        release: refuse when the working tree differs from its git commit, the destination
            folder excepted (else the manifest names the modified files), and when the stage
            has no evaluation of its own that names its checkpoint.

    Raises:
        BundleExists, EvaluationMismatch, GateError, ReleaseError: before anything is exported.
    """
    seg, seg_state = load_segmenter(segmenter_checkpoint(config))
    checkpoint = config.classifier_dir / "best.pt"
    cls, cls_state = load_classifier(checkpoint)
    try:  # the bundle screens with this config's pixels and this segmenter's masks: the ones they learnt?
        check_pixels(seg_state, config, f"the segmenter {segmenter_checkpoint(config)}")
    except LineageError as exc:
        raise SystemExit(f"error: {exc}") from exc
    check_lineage(config, cls_state, checkpoint)
    seg = SegmenterWithSigmoid(seg).eval()
    classes = get_class_config(config.data.classes)
    if cls_state["class_names"] != classes.class_names:
        raise SystemExit(f"error: classifier was trained on classes {cls_state['class_names']}, "
                         f"config says {classes.class_names}")
    evaluation = _evaluation(config, checkpoint, release)
    temperature = float(evaluation.get("temperature", 1.0))
    gates = check_gates(list(require), headline(evaluation)) if require else []
    out = bundle_dir(config)
    git = release_state(config, release)
    tag = f"{config.export.name}@{config.export.version}"
    check_destination(out, tag, force)  # before minutes of exporting, not after
    with staged_bundle(out, tag, force) as staging:
        size = config.data.input_size
        image = torch.zeros(2, 3, size, size)
        mask = torch.zeros(2, 1, size, size)
        meta = torch.zeros(2, DEFAULT_VOCABULARY.dim)
        export_onnx(seg, {"image": image}, "mask", staging / "segmenter.onnx", config.export.opset)
        exported, outputs = classifier_for_export(cls)
        export_onnx(exported, {"image": image, "mask": mask, "meta": meta}, outputs,
                    staging / "classifier.onnx", config.export.opset)
        classifier_outputs = {"logits": ["N", len(classes.class_names)]}
        if ATTENTION_OUTPUT in outputs:
            with torch.no_grad():
                _, attention = cls.forward_with_attention(image, mask, meta)
            classifier_outputs[ATTENTION_OUTPUT] = _shape(attention)

        feed = parity_inputs(config, seg_state, cls_state, config.export.parity_images)
        parity = check_parity(seg, cls, staging / "segmenter.onnx", staging / "classifier.onnx", feed,
                              config.export.parity_atol)
        manifest = Manifest(
            name=config.export.name,
            version=config.export.version,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            classes=classes.to_manifest_classes(),
            input_size=(size, size),
            segmenter=ModelSpec(
                file="segmenter.onnx", sha256=sha256_file(staging / "segmenter.onnx"),
                inputs={"image": _shape(image)}, outputs={"mask": _shape(mask)},
                mean=seg_state["mean"], std=seg_state["std"],
                architecture=f"smp Unet encoder={seg_state['model_config']['encoder']}, sigmoid output"),
            classifier=ModelSpec(
                file="classifier.onnx", sha256=sha256_file(staging / "classifier.onnx"),
                inputs={"image": _shape(image), "mask": _shape(mask), "meta": _shape(meta)},
                outputs=classifier_outputs,
                mean=cls_state["mean"], std=cls_state["std"],
                architecture=classifier_description(cls_state)),
            attention_queries=cls.attention_queries,
            metadata=DEFAULT_VOCABULARY,
            mask_threshold=float(cls_state["model_config"]["mask_threshold"]),
            mask_input_mode=str(cls_state["model_config"]["mask_input_mode"]),
            temperature=temperature,
            operating_points=list(evaluation.get("operating_points", [])),
            preprocessing=[dict(step) for step in config.data.preprocessing],
            tta=config.classifier.tta,
            # git_commit from the same state as "git" (provenance's own looks at the whole tree,
            # the bundle folder being replaced included, and would say +dirty beside clean: true)
            training={**provenance(config), "git_commit": commit_label(git), "evaluation": headline(evaluation),
                      "onnx_parity": parity, "git": git, "release": release, "quality_gates": gates},
            card=model_card(config.export.card, Path(config.data.index),
                            [c.to_dict() for c in classes.classes]),
        )
        manifest = replace(manifest, requires=fields_required(manifest))
        manifest.check()
        save_manifest(manifest, staging)
    return out


def release_state(config: Config, release: bool = True) -> dict[str, Any]:
    """The git state the manifest records; with ``release``, ReleaseError unless it is clean.

    The bundle folder being replaced is left out: it is an output, and after one rebuild it
    always differs from the commit.
    """
    git = git_state(REPO_ROOT, exclude=bundle_dir(config))
    if release and not git["clean"]:
        if git["commit"] == "unknown":
            raise ReleaseError(f"a release bundle needs a git checkout: {REPO_ROOT} is not one (or git is missing)")
        listed = ", ".join(git["modified"][:5]) + ("..." if git["modified_count"] > 5 else "")
        raise ReleaseError(f"a release bundle needs a clean git commit: {git['modified_count']} tracked files "
                           f"differ from {git['commit'][:12]} ({listed}); commit them, or export without --release")
    return git


def _evaluation(config: Config, checkpoint: Path, release: bool = False) -> dict[str, Any]:
    """The validation report whose temperature and operating points go into the manifest.

    The report must be of exactly the weights being exported: a since-retrained stage's old
    thresholds would flag the wrong patients without any other sign. A release needs one: without
    it the bundle has temperature 1.0 and no operating points, so `screen folder` could not flag.
    """
    path = eval_dir(config) / "evaluation.json"
    rerun = "run `python -m training evaluate` with this config first"
    if not path.is_file() and (config.out / "eval" / "evaluation.json").is_file():
        # Evaluated before each stage had its own folder: which stage it measured is not known here.
        rerun += f" (the report in {config.out / 'eval'} is from before each stage had its own eval folder)"
    if not path.is_file():
        if release:
            raise ReleaseError(f"{path} not found: a release bundle needs the temperature and operating "
                               f"points of its own evaluation; {rerun}")
        print(f"warning: {path} not found: exporting with temperature 1.0 and no operating points ({rerun} "
              f"to calibrate)")
        return {}
    evaluation = json.loads(path.read_text())
    evaluated = evaluation.get("checkpoint")
    if evaluated is None:
        if release:
            raise ReleaseError(f"{path} does not say which checkpoint it evaluated (written before they were "
                               f"recorded): {rerun}")
        print(f"warning: {path} does not say which checkpoint it evaluated (written before they were "
              f"recorded): make sure it is of {checkpoint}")
        return evaluation
    if not isinstance(evaluated, dict):
        evaluated = {}  # unreadable: refused below like any other checkpoint
    if evaluated.get("sha256") != checkpoint_record(checkpoint)["sha256"]:
        raise EvaluationMismatch(
            f"{path} evaluated {evaluated.get('path', '?')} (sha256 {str(evaluated.get('sha256'))[:12]}), "
            f"not the {checkpoint} being exported: {rerun}")
    # Its temperature, thresholds and Dice were measured on one segmenter's masks; a segmenter
    # retrained since would ship beside figures that are not its own.
    masks = evaluation.get("segmenter")
    segmenter = segmenter_checkpoint(config)
    if isinstance(masks, dict) and masks.get("sha256") != checkpoint_record(segmenter)["sha256"]:
        raise EvaluationMismatch(
            f"{path} was measured with the masks of segmenter sha256 {str(masks.get('sha256'))[:12]}, but "
            f"{segmenter} is another checkpoint now (retrained since): {rerun}")
    return evaluation


def headline(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The numbers worth carrying in the manifest (the full report stays in the run folder)."""
    if not evaluation:
        return {}
    cal = evaluation["calibrated"]
    keys = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
            "macro_auc", "malignant_auc", "melanoma_auc")
    return {"split": evaluation["split"], "images": evaluation["images"],
            **{k: cal.get(k) for k in keys}, "ece_before": evaluation["ece_before"],
            "ece_after": evaluation["ece_after"], "segmentation": evaluation.get("segmentation"),
            # which weights these figures are of: a bundle can be traced back to its checkpoint
            "checkpoint": evaluation.get("checkpoint")}


def classifier_description(state: dict[str, Any]) -> str:
    """The manifest's words for the classifier of checkpoint ``state`` (one model or an ensemble)."""
    if "members" in state:
        members = "; ".join(f"{m['stage']}: {_fusion_description(m['model_config'])}" for m in state["members"])
        return f"mean of the probabilities of {len(state['members'])} classifiers ({members})"
    return _fusion_description(state["model_config"])


def _fusion_description(model_config: dict[str, Any]) -> str:
    parts = [f"image={model_config['image_backbone']}", f"fusion={model_config['fusion']}",
             f"use_meta={model_config['use_meta']}", f"use_mask={model_config['use_mask']}",
             *([f"mask={model_config.get('mask_backbone') or model_config['image_backbone']}"]
               if model_config["use_mask"] else []),
             f"heads={model_config['heads']}", f"d={model_config['d_model']}"]
    return "FusionClassifier " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = config_argument_parser("export", "Write the ONNX bundle and check ONNX Runtime parity.")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing bundle folder or name@version (swapped atomically)")
    parser.add_argument("--require", action="append", default=[], metavar="FIGURE>=VALUE",
                        help="quality gate on the evaluation, e.g. malignant_auc>=0.90 or dice>=0.85 "
                             "(repeatable); export refuses below it")
    parser.add_argument("--release", action="store_true",
                        help="refuse unless the working tree is a clean git commit (the bundle folder being "
                             "replaced excepted) and this stage's own evaluation names the checkpoint exported")
    parser.add_argument("--check-release", action="store_true",
                        help="only check the working tree as --release would, and exit (seconds, before hours "
                             "of training: the evaluation comes later)")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    if args.check_release:
        try:
            git = release_state(config)
        except ReleaseError as exc:
            raise SystemExit(f"error: {exc}") from exc
        print(f"release check passed: tracked files match commit {git['commit'][:12]}")
        return 0
    try:
        out = export_bundle(config, force=args.force, require=tuple(args.require), release=args.release)
    except (ParityError, EvaluationMismatch, GateError, ReleaseError, BundleExists) as exc:
        raise SystemExit(f"error: {exc}") from exc
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"bundle written to {out} ({manifest['name']}@{manifest['version']}); "
          f"ONNX Runtime parity: {json.dumps(manifest['training']['onnx_parity'])}")
    return 0

