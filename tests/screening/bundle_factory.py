"""A tiny valid model bundle built with onnx.helper, and tiny synthetic inputs for it.

Fast and torch-free, for the screening tests.

The segmenter marks dark pixels as lesion (sigmoid of a weighted channel sum). The classifier
uses all three inputs: the pooled image, the pooled image inside the thresholded mask, the
lesion area and a linear map of the metadata, so changing the metadata or the mask changes
the logits, as in the real fusion model.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from screening.attention import ATTENTION_OUTPUT
from screening.manifest import ClassSpec, Manifest, ModelSpec, save_manifest, sha256_file
from screening.metadata import DEFAULT_VOCABULARY

CLASSES = [
    ClassSpec("nv", "melanocytic nevus", False),
    ClassSpec("bkl", "benign keratosis-like lesion", False),
    ClassSpec("mel", "melanoma", True),
    ClassSpec("bcc", "basal cell carcinoma", True),
]
INPUT_SIZE = (32, 32)
SEG_MEAN, SEG_STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
CLS_MEAN, CLS_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
MASK_THRESHOLD = 0.5
OPSET = 17
IR_VERSION = 8  # old enough for any onnxruntime the runtime supports

# Segmenter: lesion probability = sigmoid(SEG_WEIGHTS . pixel + SEG_BIAS); dark pixels -> lesion.
SEG_WEIGHTS = np.array([-2.0, -2.0, -2.0], dtype=np.float32)
SEG_BIAS = np.float32(0.5)
# Classifier bias favouring the benign classes, so the tiny bundle's risks spread over 0..1.
CLS_BIAS = np.array([1.5, 0.5, -0.5, -1.5], dtype=np.float32)


def _classifier_weights(n_classes: int, meta_dim: int) -> np.ndarray:
    """(3 pooled + 3 masked + 1 area + meta_dim) x classes, fixed so tests are reproducible."""
    rng = np.random.default_rng(1234)
    return rng.normal(0.0, 0.6, size=(7 + meta_dim, n_classes)).astype(np.float32)


def segmenter_model(input_size: tuple[int, int] = INPUT_SIZE, *, fixed_batch: int | None = None) -> onnx.ModelProto:
    height, width = input_size
    batch = fixed_batch if fixed_batch is not None else "N"
    weight = numpy_helper.from_array(SEG_WEIGHTS.reshape(1, 3, 1, 1), "w")
    bias = numpy_helper.from_array(np.array([SEG_BIAS], dtype=np.float32), "b")
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["mask"])]
    graph = helper.make_graph(
        nodes, "tiny_segmenter",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, height, width])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [batch, 1, height, width])],
        [weight, bias])
    return _finish(graph)


def classifier_model(input_size: tuple[int, int] = INPUT_SIZE, n_classes: int = len(CLASSES),
                     meta_dim: int = DEFAULT_VOCABULARY.dim, threshold: float = MASK_THRESHOLD,
                     attention: bool = False) -> onnx.ModelProto:
    height, width = input_size
    inits = [
        numpy_helper.from_array(_classifier_weights(n_classes, meta_dim), "W"),
        numpy_helper.from_array(CLS_BIAS[:n_classes], "B"),
        numpy_helper.from_array(np.array(threshold, dtype=np.float32), "thr"),
        numpy_helper.from_array(np.array(1e-3, dtype=np.float32), "eps"),
        numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "flat"),
    ]
    nodes = [
        # The mask branch sees the thresholded mask, as "binary" mask_input_mode does in-graph.
        helper.make_node("Greater", ["mask", "thr"], ["on"]),
        helper.make_node("Cast", ["on"], ["bin"], to=TensorProto.FLOAT),
        helper.make_node("GlobalAveragePool", ["image"], ["pool4"]),
        helper.make_node("Reshape", ["pool4", "flat"], ["pool"]),
        helper.make_node("Mul", ["image", "bin"], ["inside"]),
        helper.make_node("GlobalAveragePool", ["inside"], ["inside4"]),
        helper.make_node("GlobalAveragePool", ["bin"], ["area4"]),
        helper.make_node("Add", ["area4", "eps"], ["area_eps"]),
        helper.make_node("Div", ["inside4", "area_eps"], ["masked4"]),
        helper.make_node("Reshape", ["masked4", "flat"], ["masked"]),
        helper.make_node("Reshape", ["area4", "flat"], ["area"]),
        helper.make_node("Concat", ["pool", "masked", "area", "meta"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])]
    if attention:
        nodes, inits = nodes + _attention_nodes(meta_dim), inits + _attention_inits(meta_dim)
        outputs.append(helper.make_tensor_value_info(ATTENTION_OUTPUT, TensorProto.FLOAT,
                                                     ["N", 2, *attention_grid(input_size)]))
    graph = helper.make_graph(
        nodes, "tiny_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, height, width]),
         helper.make_tensor_value_info("meta", TensorProto.FLOAT, ["N", meta_dim])],
        outputs, inits)
    return _finish(graph)


# The tiny attention output: two "queries" over a grid of ATTENTION_CELL x ATTENTION_CELL pixel
# cells. The metadata query prefers dark cells by an amount set by the metadata; the mask query
# prefers cells inside the thresholded mask. Each map is a softmax over the cells, as in the
# real model, so it is a distribution that moves with the metadata and with the mask.
ATTENTION_CELL = 8


def attention_grid(input_size: tuple[int, int]) -> tuple[int, int]:
    return input_size[0] // ATTENTION_CELL, input_size[1] // ATTENTION_CELL


def _attention_inits(meta_dim: int) -> list[onnx.TensorProto]:
    sharpness = np.linspace(-3.0, 3.0, meta_dim, dtype=np.float32).reshape(meta_dim, 1)
    return [numpy_helper.from_array(sharpness, "att_v"),
            numpy_helper.from_array(np.array([0, 1, 1, 1], dtype=np.int64), "att_col"),
            numpy_helper.from_array(np.array([0, 2, -1], dtype=np.int64), "att_flat"),
            numpy_helper.from_array(np.array(6.0, dtype=np.float32), "att_gain"),
            numpy_helper.from_array(np.array([0, 2, 0, 0], dtype=np.int64), "att_grid")]


def _attention_nodes(meta_dim: int) -> list[onnx.NodeProto]:
    cell = [ATTENTION_CELL, ATTENTION_CELL]
    return [
        helper.make_node("AveragePool", ["image"], ["att_img"], kernel_shape=cell, strides=cell),
        helper.make_node("ReduceMean", ["att_img"], ["att_bright"], axes=[1], keepdims=1),
        helper.make_node("MatMul", ["meta", "att_v"], ["att_s"]),
        helper.make_node("Reshape", ["att_s", "att_col"], ["att_s4"]),
        helper.make_node("Mul", ["att_bright", "att_s4"], ["att_q_meta"]),
        helper.make_node("AveragePool", ["bin"], ["att_cover"], kernel_shape=cell, strides=cell),
        helper.make_node("Mul", ["att_cover", "att_gain"], ["att_q_mask"]),
        helper.make_node("Concat", ["att_q_meta", "att_q_mask"], ["att_q"], axis=1),
        helper.make_node("Shape", ["att_q"], ["att_shape"]),
        helper.make_node("Reshape", ["att_q", "att_flat"], ["att_q_flat"]),
        helper.make_node("Softmax", ["att_q_flat"], ["att_p"], axis=-1),
        helper.make_node("Reshape", ["att_p", "att_shape"], [ATTENTION_OUTPUT]),
    ]


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tests.screening.bundle_factory")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def build_bundle(bundle_dir: Path, *, name: str = "tiny", version: str = "1.0",
                 input_size: tuple[int, int] = INPUT_SIZE, temperature: float = 1.0,
                 segmenter: onnx.ModelProto | None = None, attention: bool = False) -> Manifest:
    """Write segmenter.onnx, classifier.onnx and manifest.json into ``bundle_dir``.

    Args:
        bundle_dir: created if missing.
        name, version: the bundle tag ``name@version``.
        input_size: (height, width) of every model input.
        temperature: the manifest's calibration temperature.
        segmenter: a replacement segmenter graph (to build deliberately wrong bundles).
        attention: give the classifier the optional attention output (two queries).

    Returns:
        The manifest that was saved.
    """
    bundle_dir = Path(bundle_dir)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    height, width = input_size
    vocab = DEFAULT_VOCABULARY
    onnx.save(segmenter if segmenter is not None else segmenter_model(input_size), bundle_dir / "segmenter.onnx")
    onnx.save(classifier_model(input_size, len(CLASSES), vocab.dim, attention=attention),
              bundle_dir / "classifier.onnx")
    classifier_outputs = {"logits": ["N", len(CLASSES)]}
    if attention:
        classifier_outputs[ATTENTION_OUTPUT] = ["N", 2, *attention_grid(input_size)]
    manifest = Manifest(
        name=name, version=version, created="2025-01-01T00:00:00Z", classes=list(CLASSES),
        input_size=(height, width),
        segmenter=ModelSpec(
            file="segmenter.onnx", sha256=sha256_file(bundle_dir / "segmenter.onnx"),
            inputs={"image": ["N", 3, height, width]}, outputs={"mask": ["N", 1, height, width]},
            mean=SEG_MEAN, std=SEG_STD, architecture="tiny test segmenter"),
        classifier=ModelSpec(
            file="classifier.onnx", sha256=sha256_file(bundle_dir / "classifier.onnx"),
            inputs={"image": ["N", 3, height, width], "mask": ["N", 1, height, width],
                    "meta": ["N", vocab.dim]},
            outputs=classifier_outputs,
            mean=CLS_MEAN, std=CLS_STD, architecture="tiny test classifier"),
        attention_queries=["meta", "mask"] if attention else [],
        metadata=vocab, mask_threshold=MASK_THRESHOLD, temperature=temperature,
        training={"data": "synthetic", "note": "built by tests/screening/bundle_factory.py"},
    )
    save_manifest(manifest, bundle_dir)
    return manifest


def reference_outputs(seg_image: np.ndarray, cls_image: np.ndarray, meta: np.ndarray,
                      threshold: float = MASK_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """What the tiny bundle computes, in numpy: (mask, logits) for normalised inputs."""
    logit = np.einsum("c,nchw->nhw", SEG_WEIGHTS, seg_image)[:, None] + SEG_BIAS
    mask = 1.0 / (1.0 + np.exp(-logit))
    binary = (mask > threshold).astype(np.float32)
    pool = cls_image.mean(axis=(2, 3))
    area = binary.mean(axis=(2, 3))
    masked = (cls_image * binary).mean(axis=(2, 3)) / (area + 1e-3)
    features = np.concatenate([pool, masked, area, meta], axis=1)
    weights = _classifier_weights(len(CLASSES), meta.shape[1])
    return mask.astype(np.float32), features @ weights + CLS_BIAS


# -- tiny inputs ---------------------------------------------------------------------------------

IMAGE_SIZE = 64


def lesion_rgb(index: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """A skin-coloured square with a dark ellipse whose size and darkness vary with ``index``.

    Different images give clearly different masks and probabilities, so ranking is tested on
    a real spread of risks.
    """
    rng = np.random.default_rng(index)
    image = np.empty((size, size, 3), np.uint8)
    image[:] = (224, 172, 150)
    axes = (int(size * (0.12 + 0.03 * (index % 7))), int(size * (0.10 + 0.025 * (index % 5))))
    darkness = 30 + (index * 37) % 120
    cv2.ellipse(image, (size // 2, size // 2), axes, 15 * index, 0, 360,
                (darkness, darkness // 2, darkness // 3), -1)
    noise = rng.integers(-12, 13, size=image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def blue_picture(blue: int = 230, size: int = 96) -> np.ndarray:
    """A blue square with a small dark spot: another picture than any lesion_rgb, yet one that
    screening assesses (a plain square is a blank picture, an error row without a thumbnail)."""
    image = np.full((size, size, 3), (20, 40, blue), np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 8, (30, 20, 10), -1)
    return image


def write_image(path: Path, rgb: np.ndarray) -> Path:
    """Encode an RGB image by the path's suffix (cv2 expects BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok, path
    path.write_bytes(data.tobytes())
    return path


def write_patients(path: Path, rows: list[dict[str, object]], fieldnames: list[str] | None = None) -> Path:
    """A patients CSV from dicts (columns: the first row's keys unless given)."""
    fieldnames = fieldnames or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


SITES = ["back", "face", "lower extremity", "chest", "acral"]


def patient_row(index: int, name: str) -> dict[str, object]:
    return {"image": name, "patient_id": f"P{index:03d}", "age": 25 + (index * 7) % 60,
            "sex": "female" if index % 2 else "male", "site": SITES[index % len(SITES)]}
