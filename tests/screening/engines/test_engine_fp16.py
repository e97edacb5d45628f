"""FP32 ONNX -> mixed-precision FP16 ONNX: valid, FP16 weights, FP32 I/O, and close to FP32 on ONNX Runtime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from engine_helpers import SIZE, export_onnx

from screening.engines.fp16 import SENSITIVE_OPS, convert_file, convert_to_mixed_fp16, fp32_ops, precision_summary
from screening.engines.shape_tensors import fp16_shape_tensors, tensor_types
from screening.errors import BundleError
from screening.metadata import DEFAULT_VOCABULARY

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def io_types(model):
    return ({v.name: v.type.tensor_type.elem_type for v in model.graph.input},
            {v.name: v.type.tensor_type.elem_type for v in model.graph.output})


def run(model, feed):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def models(torch_bundle):
    folder, _ = torch_bundle
    return {role: onnx.load(str(folder / f"{role}.onnx")) for role in ("segmenter", "classifier")}


@pytest.fixture(scope="module")
def feeds():
    rng = np.random.default_rng(1)
    image = rng.normal(0, 1, (8, 3, SIZE, SIZE)).astype(np.float32)
    meta = np.zeros((8, DEFAULT_VOCABULARY.dim), np.float32)
    meta[np.arange(8), rng.integers(0, 10, 8)] = 1
    return image, meta


def test_sensitive_ops_stay_fp32_and_sigmoid_does_not():
    ops = fp32_ops()
    assert {"Softmax", "LayerNormalization", "ReduceMean", "GlobalAveragePool", "Greater"} <= set(ops)
    assert set(SENSITIVE_OPS) <= set(ops)
    assert "Sigmoid" not in ops and "Conv" not in ops and "MatMul" not in ops
    assert "Resize" not in ops  # kept FP32 node by node, only where it takes float scales


@pytest.mark.parametrize("role", ["segmenter", "classifier"])
def test_converted_model_is_valid_with_fp16_weights_and_fp32_io(models, role):
    original = models[role]
    converted, _ = convert_to_mixed_fp16(original, f"{role}.onnx")
    onnx.checker.check_model(converted, full_check=True)
    summary = precision_summary(converted)
    before = precision_summary(original)
    assert summary["initializers"]["float16"] >= 0.8 * before["initializers"]["float"]
    assert io_types(converted) == io_types(original)
    assert all(t == FLOAT for t in io_types(converted)[0].values())
    assert all(t == FLOAT for t in io_types(converted)[1].values())
    assert summary["cast_nodes"] > before["cast_nodes"]
    # The conversion works on a copy: the bundle's model is untouched.
    assert precision_summary(original) == before


def test_attention_softmax_and_layernorm_run_in_fp32(models):
    converted, _ = convert_to_mixed_fp16(models["classifier"], "classifier.onnx")
    graph = onnx.shape_inference.infer_shapes(converted).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({i.name: i.data_type for i in graph.initializer})
    checked = [n for n in graph.node if n.op_type in ("Softmax", "LayerNormalization")]
    assert {n.op_type for n in checked} == {"Softmax", "LayerNormalization"}
    for node in checked:
        assert types[node.input[0]] == FLOAT, node.name
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(types[n.input[1]] == FLOAT16 for n in convs)


def test_segmenter_mask_agrees_with_fp32(models, feeds):
    image, _ = feeds
    converted, _ = convert_to_mixed_fp16(models["segmenter"], "segmenter.onnx")
    mask32, mask16 = run(models["segmenter"], {"image": image}), run(converted, {"image": image})
    assert mask16.dtype == np.float32 and mask16.shape == (8, 1, SIZE, SIZE)
    assert np.abs(mask16 - mask32).max() < 5e-3
    assert ((mask16 > 0.5) != (mask32 > 0.5)).mean() < 1e-3


def test_classifier_agrees_with_fp32_within_the_verify_limits(models, feeds):
    image, meta = feeds
    mask = run(models["segmenter"], {"image": image})
    feed = {"image": image, "mask": mask, "meta": meta}
    converted, _ = convert_to_mixed_fp16(models["classifier"], "classifier.onnx")
    p32, p16 = softmax(run(models["classifier"], feed)), softmax(run(converted, feed))
    assert (p16.argmax(1) == p32.argmax(1)).mean() == 1.0
    assert np.abs(p16 - p32).max() < 0.02
    assert np.abs(p16 - p32).max() > 0  # FP16 really changed something


def test_in_graph_float_cast_is_retargeted_to_fp16(tmp_path):
    torch = pytest.importorskip("torch")

    class Threshold(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, mask):
            return self.conv((mask > 0.5).float())

    path = export_onnx(torch, Threshold().eval(), {"mask": torch.rand(1, 1, 8, 8)}, ["out"], tmp_path / "t.onnx")
    model = onnx.load(str(path))
    converted, _ = convert_to_mixed_fp16(model, "threshold.onnx")
    casts = [n for n in converted.graph.node if n.op_type == "Cast" and n.name in {m.name for m in model.graph.node}]
    assert [a.i for n in casts for a in n.attribute if a.name == "to"] == [FLOAT16]
    x = np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32)
    assert np.allclose(run(converted, {"mask": x}), run(model, {"mask": x}), atol=1e-2)


def test_converting_twice_is_refused(models):
    converted, _ = convert_to_mixed_fp16(models["segmenter"], "segmenter.onnx")
    with pytest.raises(BundleError, match="cannot convert segmenter.fp16.onnx to FP16: The model is already"):
        convert_to_mixed_fp16(converted, "segmenter.fp16.onnx")


def test_convert_file_writes_the_mixed_precision_model(torch_bundle, tmp_path):
    folder, _ = torch_bundle
    notes = convert_file(folder / "segmenter.onnx", tmp_path / "segmenter.fp16.onnx")
    written = onnx.load(str(tmp_path / "segmenter.fp16.onnx"))
    assert precision_summary(written)["initializers"].get("float16", 0) > 0
    assert all(note.startswith("segmenter.onnx: ") for note in notes)


def test_unreadable_file_is_a_bundle_error(tmp_path):
    bad = tmp_path / "segmenter.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(BundleError, match=f"cannot read {bad}"):
        convert_file(bad, tmp_path / "out.onnx")


def test_unnamed_nodes_get_unique_cast_names():
    # onnx.helper graphs often leave node names empty; the converter names casts after nodes.
    from onnx import helper

    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=1), helper.make_node("Softmax", ["s"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    converted, _ = convert_to_mixed_fp16(model, "helper.onnx")
    names = [n.name for n in converted.graph.node]
    assert len(names) == len(set(names))
    x = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    assert np.allclose(run(converted, {"x": x}), run(model, {"x": x}), atol=1e-3)


def test_shape_computations_stay_fp32(tmp_path):
    # timm's tf_ EfficientNets (the Lite0 encoder) pad "same" dynamically:
    # Shape -> Cast(float) -> Div -> Ceil -> ... -> Pad. FP16 would round sizes above 2048
    # and TensorRT takes no FP16 shape tensors.
    torch = pytest.importorskip("torch")
    from timm.layers import Conv2dSame

    net = torch.nn.Sequential(Conv2dSame(3, 8, 3, stride=2), torch.nn.ReLU(), Conv2dSame(8, 4, 3, stride=2)).eval()
    path = export_onnx(torch, net, {"image": torch.randn(1, 3, 64, 64)}, ["out"], tmp_path / "same.onnx")
    model = onnx.load(str(path))
    assert any(n.op_type == "Ceil" for n in model.graph.node)
    # Folded (as engines are built): the padding arithmetic is gone, nothing FP16 feeds a shape.
    converted, _ = convert_to_mixed_fp16(model, "same.onnx")
    assert not any(n.op_type == "Ceil" for n in converted.graph.node)
    assert fp16_shape_tensors(converted) == []
    types = tensor_types(converted)
    assert all(types[n.input[1]] == FLOAT16 for n in converted.graph.node if n.op_type == "Conv")
    # Unfolded, the shape nodes themselves still compute in FP32 (the second line of defence).
    unfolded, _ = convert_to_mixed_fp16(model, "same.onnx", fold_shapes=False)
    types = tensor_types(unfolded)
    assert {types[n.input[0]] for n in unfolded.graph.node if n.op_type == "Ceil"} == {FLOAT}
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    out32, out16 = run(model, {"image": x}), run(converted, {"image": x})
    assert out16.shape == out32.shape == (2, 4, 16, 16)
    assert np.abs(out16 - out32).max() < 0.01 * np.abs(out32).max()


def test_converter_clamp_warnings_are_summarised():
    from onnx import helper, numpy_helper

    weights = [numpy_helper.from_array(np.array([1e-9, 0.5], np.float32), f"w{i}") for i in range(3)]
    nodes = [helper.make_node("Mul", ["x", "w0"], ["a"]), helper.make_node("Mul", ["a", "w1"], ["b"]),
             helper.make_node("Mul", ["b", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", FLOAT, ["N", 2])], initializer=weights)
    _, notes = convert_to_mixed_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "m.onnx")
    assert notes == ["m.onnx: 3 weight tensor(s) had values clamped to 1e-07 (outside FP16's range)"]
