"""Shape arithmetic before the FP16 conversion: folded, no FP16 shape tensor left, far fewer casts.

Runs on the tiny ONNX bundle everywhere and on whatever bundle is at engines/starter (any
EfficientNet-Lite U-Net + fusion classifier export, with or without the attention output).
"""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx_bundle import SIZE, build_onnx_bundle

from screening.engines.fp16 import convert_to_mixed_fp16, precision_summary
from screening.engines.shape_tensors import (fold_static_shapes, fp16_shape_tensors, shape_input_cone,
                                             tensor_types)

REPO = Path(__file__).resolve().parents[3]
STARTER = REPO / "engines" / "starter"
ROLES = ("segmenter", "classifier")


def run(model: onnx.ModelProto, feed: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder, manifest = build_onnx_bundle(tmp_path_factory.mktemp("onnx") / "tiny")
    return {role: onnx.load(str(folder / f"{role}.onnx")) for role in ROLES}, manifest


def feed_for(role: str, manifest, batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 1, (batch, 3, SIZE, SIZE)).astype(np.float32)
    if role == "segmenter":
        return {"image": image}
    meta = np.zeros((batch, manifest.metadata.dim), np.float32)
    meta[np.arange(batch), rng.integers(0, 10, batch)] = 1
    return {"image": image, "mask": rng.random((batch, 1, SIZE, SIZE)).astype(np.float32), "meta": meta}


def test_the_cone_reaches_back_from_shape_inputs_and_stops_at_shape():
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Cast", ["s"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f", "k"], ["g"]), helper.make_node("Cast", ["g"], ["shape"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[onnx.numpy_helper.from_array(np.array(1.0, np.float32), "k")])
    assert shape_input_cone(helper.make_model(graph)) == {"shape", "g", "f", "k", "s"}  # not x: Shape reads dims only


@pytest.mark.parametrize("role", ROLES)
def test_unfolded_conversion_leaves_fp16_shape_tensors_and_folding_removes_them(tiny, role):
    models, _ = tiny
    unfolded, _ = convert_to_mixed_fp16(models[role], role, fold_shapes=False)
    assert fp16_shape_tensors(unfolded)  # the hazard TensorRT refuses, present without folding
    converted, _ = convert_to_mixed_fp16(models[role], role)
    assert fp16_shape_tensors(converted) == []
    assert precision_summary(converted)["cast_nodes"] < precision_summary(unfolded)["cast_nodes"]


@pytest.mark.parametrize("role", ROLES)
def test_folding_keeps_the_batch_dynamic_and_the_outputs_exact(tiny, role):
    models, manifest = tiny
    folded, passes = fold_static_shapes(models[role])
    assert passes >= 2  # the second pass folds what the first pass's shapes made foldable
    assert "Ceil" not in {node.op_type for node in folded.graph.node}  # the "same" padding is constant now
    for batch in (1, 5):
        feed = feed_for(role, manifest, batch)
        for before, after in zip(run(models[role], feed), run(folded, feed)):
            assert after.shape[0] == batch
            np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)


def test_threshold_pooling_and_attention_stay_fp32_resize_with_sizes_runs_fp16(tiny):
    models, _ = tiny
    check_precisions(convert_to_mixed_fp16(models["segmenter"], "segmenter")[0])
    check_precisions(convert_to_mixed_fp16(models["classifier"], "classifier")[0])


def check_precisions(model: onnx.ModelProto) -> None:
    """What docs/tensorrt.md promises about which ops keep FP32, on any of our exports."""
    types = tensor_types(model)
    for node in model.graph.node:
        if node.op_type in ("GlobalAveragePool", "ReduceMean", "Softmax", "LayerNormalization", "Greater"):
            assert types[node.input[0]] == TensorProto.FLOAT, (node.op_type, node.name)
        if node.op_type == "Resize" and not (len(node.input) > 2 and node.input[2]):
            assert types[node.input[0]] == TensorProto.FLOAT16, node.name
        if node.op_type == "Conv":
            assert types[node.input[1]] == TensorProto.FLOAT16, node.name


@pytest.mark.skipif(not (STARTER / "manifest.json").is_file(), reason="engines/starter is not in this checkout")
@pytest.mark.parametrize("role", ROLES)
def test_starter_bundle_converts_without_fp16_shape_tensors_and_was_exported_folded(role):
    """Exports fold the shape arithmetic themselves (training.export.fold_for_runtime), so the
    engine build's own folding finds nothing left: the same Casts with and without it."""
    model = onnx.load(str(STARTER / f"{role}.onnx"))
    unfolded, _ = convert_to_mixed_fp16(model, role, fold_shapes=False)
    converted, _ = convert_to_mixed_fp16(model, role)
    assert fp16_shape_tensors(converted) == [] and fp16_shape_tensors(unfolded) == []
    assert precision_summary(converted)["cast_nodes"] == precision_summary(unfolded)["cast_nodes"]
    check_precisions(converted)
