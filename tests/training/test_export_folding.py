"""Exports fold the backbones' shape arithmetic: ONNX Runtime then fuses the padding into the
convolutions (docs/performance.md), and the folded graph computes what PyTorch computes at any batch."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import timm
import torch

from training.export import export_onnx

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


def _lite0() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3).eval()


def _shape_nodes(path) -> list[str]:
    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Shape"]


def test_tf_padding_is_exported_as_constants_and_the_graph_still_matches_pytorch(tmp_path):
    model = _lite0()
    plain = tmp_path / "plain.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 3, 64, 64),), str(plain), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
                          opset_version=17, dynamo=False)
    assert _shape_nodes(plain)  # what the exporter alone writes: padding computed at run time

    folded = tmp_path / "folded.onnx"
    export_onnx(model, {"image": torch.zeros(2, 3, 64, 64)}, "logits", folded, opset=17)
    graph = onnx.load(str(folded)).graph
    assert not _shape_nodes(folded)
    constants = {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    assert all(n.input[1] in constants for n in graph.node if n.op_type == "Pad")

    session = ort.InferenceSession(str(folded), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch axis stays dynamic
        image = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(image).numpy()
        np.testing.assert_allclose(session.run(["logits"], {"image": image.numpy()})[0], expected, atol=1e-4)
