"""A small ensemble of trained classifiers, exported as one classifier: what screening sees is
the mean of the members' probabilities, and members that would screen differently are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ..conftest import tiny_overrides
from screening.manifest import load_manifest
from screening.metadata import DEFAULT_VOCABULARY
from screening.preprocess import softmax
from training.config import load_config
from training.ensemble import EnsembleError, build, ensemble_state
from training.inference import load_classifier
from training.models.ensemble import ProbabilityMean
from training.models.fusion import FusionClassifier, FusionConfig

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]
SIZE = 96


def _member(seed: int) -> FusionClassifier:
    torch.manual_seed(seed)
    cfg = FusionConfig(image_backbone="test_efficientnet", d_model=32, heads=4)
    return FusionClassifier(cfg, DEFAULT_VOCABULARY.dim, num_classes=5).eval()


def _inputs(n: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(n, 3, SIZE, SIZE, generator=generator)
    mask = torch.zeros(n, 1, SIZE, SIZE)
    mask[:, :, 20:60, 30:80] = 0.9
    meta = torch.from_numpy(np.stack([DEFAULT_VOCABULARY.encode(60, "female", "back")[0]] * n)).float()
    return image, mask, meta


def test_the_runtime_softmax_of_the_ensemble_is_the_mean_of_its_members_probabilities():
    members = [_member(0), _member(1)]
    inputs = _inputs()
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(*inputs), dim=1) for m in members]).mean(dim=0)
        logits, attention = ProbabilityMean(members).forward_with_attention(*inputs)
        member_maps = [m.forward_with_attention(*inputs)[1] for m in members]
    # screening computes softmax(logits / temperature): temperature 1 gives the mean back
    np.testing.assert_allclose(softmax(logits.numpy()), expected.numpy(), atol=1e-6)
    torch.testing.assert_close(attention, (member_maps[0] + member_maps[1]) / 2)
    assert not torch.allclose(softmax_t(members[0], inputs), softmax_t(members[1], inputs))  # two opinions


def softmax_t(model, inputs):
    with torch.no_grad():
        return torch.softmax(model(*inputs), dim=1)


def test_a_class_no_member_believes_in_gets_a_finite_logit():
    members = [_member(0), _member(1)]
    for m in members:  # make every member certain of class 0
        with torch.no_grad():
            m.head[-1].bias.copy_(torch.tensor([200.0, -200.0, -200.0, -200.0, -200.0]))
    with torch.no_grad():
        logits = ProbabilityMean(members)(*_inputs())
    assert torch.isfinite(logits).all()
    assert softmax(logits.numpy())[:, 0].min() > 0.999


def test_one_member_is_not_an_ensemble():
    with pytest.raises(ValueError, match="at least two members"):
        ProbabilityMean([_member(0)])


def _state(mask_threshold=0.5, classes=("nv", "mel"), masks_from="a" * 64, pixels=None):
    return {"model": {}, "model_config": {"mask_threshold": mask_threshold, "mask_input_mode": "binary",
                                          "use_mask": True, "use_meta": True},
            "class_names": list(classes), "mean": [0.5] * 3, "std": [0.5] * 3, "meta_dim": 20,
            "masks_from": None if masks_from is None else {"segmenter_sha256": masks_from},
            "pixels": pixels}


@pytest.mark.parametrize("other, words", [
    (_state(mask_threshold=0.4), "model.mask_threshold 0.4"),
    (_state(classes=("nv", "bcc")), "class_names"),
    (_state(masks_from="b" * 64), "different masks_from"),
    (_state(pixels={"input_size": 224, "preprocessing": []}), None),  # the first records none: taken on trust
])
def test_members_that_would_screen_differently_are_refused(tmp_path, other, words):
    paths = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "best.pt").write_bytes(name.encode())
        paths.append(tmp_path / name / "best.pt")
    members = [(paths[0], _state()), (paths[1], other)]
    if words is None:
        assert ensemble_state(members)["pixels"] == {"input_size": 224, "preprocessing": []}
        return
    with pytest.raises(EnsembleError, match=words):
        ensemble_state(members)


@pytest.mark.parametrize("members, stage, words", [
    (["classifier"], "ens", "at least two"),
    (["classifier", "classifier"], "ens", "twice"),
    (["classifier", "other"], "classifier", "overwrite a member"),
])
def test_a_config_that_names_no_real_ensemble_is_refused(tmp_path, members, stage, words):
    config = load_config(None, [f"out_dir={tmp_path}", f"classifier.ensemble_of={json.dumps(members)}",
                                f"classifier.stage_dir={stage}"])
    with pytest.raises(EnsembleError, match=words):
        build(config)


def test_an_ensemble_trains_evaluates_and_exports_as_one_classifier(trained_tiny, tmp_path):
    """Two tiny stages -> `ensemble` -> `evaluate` -> `export`: a bundle whose one classifier graph
    gives, through ONNX Runtime, the mean of the two members' probabilities."""
    from training.evaluate import evaluate
    from training.export import export_bundle
    from training.train_classifier import train

    out = tmp_path / "run"
    shutil.copytree(trained_tiny.out, out, ignore=shutil.ignore_patterns("bundle*"))
    base = tiny_overrides(out)
    train(load_config(None, base + ["seed=7", "classifier.stage_dir=second", "classifier.optim.epochs=3"]))
    config = load_config(None, base + ['classifier.ensemble_of=["classifier", "second"]', "classifier.stage_dir=ens",
                                       f"export.out_dir={tmp_path / 'bundle'}", "export.version=9.9.9"])
    build(config)
    report = evaluate(config)
    assert report["checkpoint"]["path"].endswith("ens/best.pt")
    bundle = export_bundle(config)

    manifest = load_manifest(bundle)
    assert manifest.classifier.architecture.startswith("mean of the probabilities of 2 classifiers")
    assert manifest.temperature == pytest.approx(report["temperature"])
    first, _ = load_classifier(out / "classifier" / "best.pt")
    second, _ = load_classifier(out / "second" / "best.pt")
    size = config.data.input_size
    generator = torch.Generator().manual_seed(3)
    image = torch.randn(4, 3, size, size, generator=generator)
    mask = torch.zeros(4, 1, size, size)
    mask[:, :, 10:40, 12:50] = 0.8
    meta = torch.from_numpy(np.stack([DEFAULT_VOCABULARY.encode(40, "male", "back")[0]] * 4)).float()
    with torch.no_grad():
        expected = (torch.softmax(first(image, mask, meta), 1) + torch.softmax(second(image, mask, meta), 1)) / 2
    session = ort.InferenceSession(str(bundle / manifest.classifier.file), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"image": image.numpy(), "mask": mask.numpy(), "meta": meta.numpy()})[0]
    np.testing.assert_allclose(softmax(logits), expected.numpy(), atol=1e-5)


def test_the_ensemble_graph_converts_to_fp16_with_its_log_in_fp32(tmp_path):
    """What an engine build does to the graph (screening/engines/fp16.py): the log of the mean
    probability stays FP32, and the converted graph ranks as the FP32 one does."""
    import onnx

    from screening.engines.fp16 import convert_to_mixed_fp16
    from training.export import classifier_for_export, export_onnx

    ensemble = ProbabilityMean([_member(0), _member(1)]).eval()
    image, mask, meta = _inputs(4)
    exported, outputs = classifier_for_export(ensemble)
    path = tmp_path / "classifier.onnx"
    export_onnx(exported, {"image": image, "mask": mask, "meta": meta}, outputs, path, opset=17)
    original = onnx.load(str(path))
    converted, _ = convert_to_mixed_fp16(original, "classifier.onnx")
    graph = onnx.shape_inference.infer_shapes(converted).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    logs = [n for n in graph.node if n.op_type == "Log"]
    assert logs and all(types[n.input[0]] == onnx.TensorProto.FLOAT for n in logs)
    feed = {"image": image.numpy(), "mask": mask.numpy(), "meta": meta.numpy()}

    def probabilities(model):
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return softmax(session.run(["logits"], feed)[0])

    p32, p16 = probabilities(original), probabilities(converted)
    assert np.abs(p16 - p32).max() < 0.02 and (p16.argmax(1) == p32.argmax(1)).all()
