"""A tiny real bundle written with the onnx helper API alone (no torch), shaped like the real models.

The segmenter pads "same" at run time as timm's tf_ EfficientNets do (Shape -> Cast to float ->
Div -> Ceil -> ... -> Pad), downsamples, and upsamples with a Resize whose sizes are computed
from the input's shape, like the U-Net decoder. The classifier has the fusion model's parts:
image tokens reshaped from a feature map, the mask thresholded in the graph, metadata and mask
vectors as queries of a softmax attention over the tokens, LayerNormalization, a whole-map
GlobalAveragePool and a linear head. Weights are seeded random numbers, so the GPU tests can
build TensorRT engines from it on a machine without torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from engine_helpers import HAM7, make_manifest
from onnx import TensorProto, helper, numpy_helper

from screening.manifest import Manifest, save_manifest, sha256_file
from screening.metadata import DEFAULT_VOCABULARY

SIZE = 64
OPSET = 17
WIDTH = 16  # channels of the classifier's feature map and of the attention


class GraphBuilder:
    """Collects nodes and initializers with unique names."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, value, dtype=np.float32) -> str:
        name = self.name("c")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(op_type), **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> str:
        weight = self.rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))
        bias = self.rng.normal(0, 0.1, cout)
        return self.op("Conv", [x, self.const(weight), self.const(bias)], kernel_shape=[k, k],
                       strides=[stride, stride], pads=[pad] * 4)

    def same_pad(self, x: str, kernel: int, stride: int) -> str:
        """timm's dynamic "same" padding: every size computed from Shape(x) through float math."""
        hw = self.op("Slice", [self.op("Shape", [x]), self.const([2], np.int64), self.const([4], np.int64)])
        size = self.op("Cast", [hw], to=TensorProto.FLOAT)
        steps = self.op("Ceil", [self.op("Div", [size, self.const(float(stride))])])
        needed = self.op("Add", [self.op("Mul", [self.op("Sub", [steps, self.const(1.0)]), self.const(float(stride))]),
                                 self.const(float(kernel))])
        total = self.op("Cast", [self.op("Max", [self.op("Sub", [needed, size]), self.const(0.0)])],
                        to=TensorProto.INT64)
        before = self.op("Div", [total, self.const(2, np.int64)])
        after = self.op("Sub", [total, before])
        zeros = self.const([0, 0], np.int64)
        pads = self.op("Concat", [zeros, before, zeros, after], axis=0)
        return self.op("Pad", [x, pads, self.const(0.0)])

    def model(self, inputs: list, outputs: list, name: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model


def io(name: str, *dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *dims])


def segmenter_model(seed: int = 0) -> onnx.ModelProto:
    """image (N, 3, 64, 64) -> mask (N, 1, 64, 64) lesion probability."""
    g = GraphBuilder(seed)
    x = g.op("Relu", [g.conv(g.same_pad("image", 3, 2), 3, 8, 3, stride=2)])
    x = g.op("Relu", [g.conv(x, 8, 8, 3, pad=1)])
    batch = g.op("Slice", [g.op("Shape", [x]), g.const([0], np.int64), g.const([2], np.int64)])
    sizes = g.op("Concat", [batch, g.const([SIZE, SIZE], np.int64)], axis=0)
    x = g.op("Resize", [x, "", "", sizes], mode="nearest")
    g.nodes.append(helper.make_node("Sigmoid", [g.conv(x, 8, 1, 3, pad=1)], ["mask"], name="head"))
    return g.model([io("image", 3, SIZE, SIZE)], [io("mask", 1, SIZE, SIZE)], "segmenter")


def classifier_model(classes: int = len(HAM7), seed: int = 1, threshold: float = 0.5) -> onnx.ModelProto:
    """image, mask, meta -> logits (N, classes): attention of metadata and mask queries over image tokens."""
    g = GraphBuilder(seed)
    fmap = g.op("Relu", [g.conv(g.same_pad("image", 3, 2), 3, WIDTH, 3, stride=2)])
    fmap = g.op("Relu", [g.conv(fmap, WIDTH, WIDTH, 3, stride=4, pad=1)])  # (N, 16, 8, 8): 64 tokens
    batch = g.op("Slice", [g.op("Shape", [fmap]), g.const([0], np.int64), g.const([1], np.int64)])
    flat = g.op("Reshape", [fmap, g.op("Concat", [batch, g.const([WIDTH, -1], np.int64)], axis=0)])
    tokens = g.op("Transpose", [flat], perm=[0, 2, 1])  # (N, 64, 16)
    pooled = g.op("Flatten", [g.op("GlobalAveragePool", [fmap])], axis=1)

    binary = g.op("Cast", [g.op("Greater", ["mask", g.const(threshold)])], to=TensorProto.FLOAT)
    mvec = g.op("Relu", [g.conv(binary, 1, WIDTH, 5, stride=4, pad=2)])
    mvec = g.op("Flatten", [g.op("GlobalAveragePool", [mvec])], axis=1)
    dim = DEFAULT_VOCABULARY.dim
    qvec = g.op("Relu", [g.op("Gemm", ["meta", g.const(g.rng.normal(0, 0.5, (dim, WIDTH))),
                                       g.const(np.zeros(WIDTH))])])
    axis = g.const([1], np.int64)
    queries = g.op("Concat", [g.op("Unsqueeze", [qvec, axis]), g.op("Unsqueeze", [mvec, axis])], axis=1)
    scores = g.op("Mul", [g.op("MatMul", [queries, g.op("Transpose", [tokens], perm=[0, 2, 1])]),
                          g.const(1 / np.sqrt(WIDTH))])
    fused = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), tokens])  # (N, 2, 16)
    fused = g.op("LayerNormalization", [fused, g.const(np.ones(WIDTH)), g.const(np.zeros(WIDTH))], axis=-1)
    features = g.op("Concat", [g.op("Flatten", [fused], axis=1), pooled], axis=1)  # (N, 48)
    weight = g.rng.normal(0, 0.5, (3 * WIDTH, classes))  # logits spread over a few units, like a trained model's
    g.nodes.append(helper.make_node("Gemm", [features, g.const(weight), g.const(np.zeros(classes))], ["logits"],
                                    name="head"))
    return g.model([io("image", 3, SIZE, SIZE), io("mask", 1, SIZE, SIZE), io("meta", dim)],
                   [io("logits", classes)], "classifier")


def build_onnx_bundle(folder: Path) -> tuple[Path, Manifest]:
    """Write the two models and a matching manifest into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(segmenter_model(), str(folder / "segmenter.onnx"))
    onnx.save(classifier_model(), str(folder / "classifier.onnx"))
    manifest = make_manifest(SIZE, sha256_file(folder / "segmenter.onnx"), sha256_file(folder / "classifier.onnx"))
    save_manifest(manifest, folder)
    return folder, manifest
