"""`python -m training join`: exported bundles joined into one whose classifier is their ensemble,
calibrated anew on the validation split; bundles that would screen differently are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from ..conftest import SAMPLE_DATA, tiny_overrides
from screening.bundle_store import BundleExists
from screening.cli import cli
from screening.manifest import load_manifest, sha256_file
from screening.metadata import DEFAULT_VOCABULARY
from screening.preprocess import softmax
from training.config import load_config
from training.join_bundles import JoinError, join, join_classifiers, main
from training.models.ensemble import ProbabilityMean
from training.models.fusion import FusionClassifier, FusionConfig

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


def _member(seed: int) -> FusionClassifier:
    torch.manual_seed(seed)
    cfg = FusionConfig(image_backbone="test_efficientnet", d_model=32, heads=4)
    return FusionClassifier(cfg, DEFAULT_VOCABULARY.dim, num_classes=4).eval()


def _feed(n: int, size: int, seed: int = 1) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(seed)
    mask = np.zeros((n, 1, size, size), np.float32)
    mask[:, :, size // 4:size // 2, size // 3:3 * size // 4] = 0.9
    meta = np.stack([DEFAULT_VOCABULARY.encode(50, "female", "back")[0]] * n).astype(np.float32)
    return {"image": generator.standard_normal((n, 3, size, size)).astype(np.float32), "mask": mask, "meta": meta}


def _run(model: onnx.ModelProto | Path, feed: dict[str, np.ndarray], outputs=("logits", "attention")):
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(list(outputs), feed)


def test_the_joined_graph_computes_what_the_pytorch_ensemble_computes(tmp_path):
    from training.export import classifier_for_export, export_onnx

    members = [_member(0), _member(1)]
    paths = []
    for i, member in enumerate(members):
        exported, outputs = classifier_for_export(member)
        feed = {k: torch.from_numpy(v) for k, v in _feed(2, 64).items()}
        paths.append(tmp_path / f"member{i}.onnx")
        export_onnx(exported, feed, outputs, paths[-1], opset=17)
    joined = join_classifiers([onnx.load(str(p)) for p in paths])

    feed = _feed(5, 64, seed=2)
    logits, attention = _run(joined, feed)
    with torch.no_grad():
        expected, expected_attention = ProbabilityMean(members).forward_with_attention(
            *(torch.from_numpy(feed[k]) for k in ("image", "mask", "meta")))
    np.testing.assert_allclose(softmax(logits), softmax(expected.numpy()), atol=1e-5)
    np.testing.assert_allclose(attention, expected_attention.numpy(), atol=1e-5)
    one, two = (softmax(_run(p, feed, ["logits"])[0]) for p in paths)
    assert np.abs(one - two).max() > 1e-3  # two opinions, averaged
    np.testing.assert_allclose(softmax(logits), (one + two) / 2, atol=1e-5)


@pytest.fixture(scope="module")
def two_bundles(trained_tiny, tmp_path_factory):
    """The tiny run's bundle and a second one from another seed's classifier on the same index."""
    from training.evaluate import evaluate
    from training.export import export_bundle
    from training.train_classifier import train

    root = tmp_path_factory.mktemp("join")
    out = root / "run"
    shutil.copytree(trained_tiny.out, out, ignore=shutil.ignore_patterns("bundle*"))
    base = tiny_overrides(out)
    config = load_config(None, base + ["seed=7", "classifier.stage_dir=second", "classifier.optim.epochs=4",
                                       f"export.out_dir={root / 'second'}", "export.version=0.0.2"])
    train(config)
    evaluate(config)
    export_bundle(config)
    return trained_tiny.out / "bundle", root / "second", trained_tiny.out / "index.csv"


def test_a_joined_bundle_screens_the_mean_of_its_members_calibrated_on_validation(two_bundles, tmp_path, capsys):
    first, second, index = two_bundles
    out = tmp_path / "joined"
    assert main([str(first), str(second), "--index", str(index), "--out", str(out), "--version", "0.1.0",
                 "--changelog", "0.1.0: two members"]) == 0
    assert "tiny@0.1.0" in capsys.readouterr().out

    manifest = load_manifest(out)  # the contract holds: files, sha256s, shapes
    members = [load_manifest(first), load_manifest(second)]
    assert manifest.classifier.architecture.startswith("mean of the probabilities of 2 classifiers (tiny@0.0.1")
    assert [m["bundle"] for m in manifest.training["joined_from"]] == ["tiny@0.0.1", "tiny@0.0.2"]
    assert manifest.segmenter.sha256 == members[0].segmenter.sha256
    assert manifest.card["changelog"][0] == "0.1.0: two members"
    evaluation = manifest.training["evaluation"]
    assert evaluation["split"] == "val" and evaluation["images"] == 20
    # the temperature is the joined graph's own, fitted on validation, not a member's
    assert manifest.temperature not in {m.temperature for m in members}
    assert manifest.training["onnx_parity"]["max_abs_prob_delta_vs_members"] <= 1e-4

    feed = _feed(4, 64, seed=3)
    joined = softmax(_run(out / "classifier.onnx", feed, ["logits"])[0])
    each = [softmax(_run(b / "classifier.onnx", feed, ["logits"])[0]) for b in (first, second)]
    np.testing.assert_allclose(joined, (each[0] + each[1]) / 2, atol=1e-5)

    results = tmp_path / "results.csv"
    result = CliRunner().invoke(cli, ["folder", str(SAMPLE_DATA / "images"), "--meta", str(SAMPLE_DATA / "patients.csv"),
                                      "--out", str(results), "--bundle", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    screened = pd.read_csv(results)
    assert len(screened) == 72 and set(screened["status"]) == {"ok"}


def _edited_copy(bundle: Path, dest: Path, **fields) -> Path:
    shutil.copytree(bundle, dest)
    data = json.loads((dest / "manifest.json").read_text())
    data.update(fields)
    (dest / "manifest.json").write_text(json.dumps(data))
    return dest


def test_the_segmenter_comes_from_the_member_named(two_bundles, tmp_path):
    first, second, index = two_bundles
    other = _edited_copy(second, tmp_path / "other")
    model = onnx.load(str(other / "segmenter.onnx"))
    bias = next(t for t in reversed(model.graph.initializer) if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 1)
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 2.0, bias.name))  # another segmenter
    onnx.save(model, str(other / "segmenter.onnx"))
    data = json.loads((other / "manifest.json").read_text())
    data["segmenter"]["sha256"] = sha256_file(other / "segmenter.onnx")
    (other / "manifest.json").write_text(json.dumps(data))

    out = join([first, other], index, tmp_path / "joined", "0.1.1", segmenter_from=1)
    image = _feed(3, 64)["image"]
    masks = {name: _run(path / "segmenter.onnx", {"image": image}, ["mask"])[0]
             for name, path in (("joined", out), ("first", first), ("other", other))}
    np.testing.assert_allclose(masks["joined"], masks["other"], atol=1e-5)
    assert np.abs(masks["joined"] - masks["first"]).max() > 1e-3
    assert load_manifest(out).training["segmenter_from"] == "tiny@0.0.2"


@pytest.mark.parametrize("field, value", [("mask_threshold", 0.3),
                                          ("preprocessing", [{"name": "shades_of_gray", "power": 6}]),
                                          ("attention_queries", ["mask", "meta"])])
def test_members_that_would_screen_differently_are_refused(two_bundles, tmp_path, field, value):
    first, second, index = two_bundles
    other = _edited_copy(second, tmp_path / "other", **{field: value})
    with pytest.raises(JoinError, match=field):
        join([first, other], index, tmp_path / "joined", "0.1.2")
    assert not (tmp_path / "joined").exists()


def test_a_member_trained_on_another_index_is_refused(two_bundles, tmp_path):
    """Its validation split could be that member's training data: no honest temperature."""
    first, second, index = two_bundles
    frame = pd.read_csv(index, dtype=str, keep_default_na=False)
    frame.loc[frame["split"] == "val", "split"] = "train"
    frame.loc[frame.index[:20], "split"] = "val"
    moved = tmp_path / "index.csv"
    frame.to_csv(moved, index=False)
    with pytest.raises(JoinError, match="trained on another index"):
        join([first, second], moved, tmp_path / "joined", "0.1.3")


def test_one_bundle_is_not_an_ensemble_and_an_existing_bundle_is_kept(two_bundles, tmp_path):
    first, second, index = two_bundles
    with pytest.raises(JoinError, match="at least two"):
        join([first], index, tmp_path / "joined", "0.1.4")
    with pytest.raises(BundleExists):
        join([first, second], index, first, "0.1.5")
    assert load_manifest(first).tag == "tiny@0.0.1"


def test_the_joined_graph_converts_to_fp16_with_its_log_in_fp32(tmp_path):
    """What an engine build does to it (screening/engines/fp16.py), as for `training ensemble`'s graph."""
    from screening.engines.fp16 import convert_to_mixed_fp16
    from training.export import classifier_for_export, export_onnx

    paths = []
    for i, member in enumerate([_member(0), _member(1)]):
        exported, outputs = classifier_for_export(member)
        paths.append(tmp_path / f"member{i}.onnx")
        export_onnx(exported, {k: torch.from_numpy(v) for k, v in _feed(2, 64).items()}, outputs, paths[-1], opset=17)
    joined = join_classifiers([onnx.load(str(p)) for p in paths])
    converted, _ = convert_to_mixed_fp16(joined, "classifier.onnx")
    graph = onnx.shape_inference.infer_shapes(converted).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    logs = [n for n in graph.node if n.op_type == "Log"]
    assert logs and all(types[n.input[0]] == onnx.TensorProto.FLOAT for n in logs)
    feed = _feed(4, 64, seed=5)
    p32, p16 = softmax(_run(joined, feed, ["logits"])[0]), softmax(_run(converted, feed, ["logits"])[0])
    assert np.abs(p16 - p32).max() < 0.02 and (p16.argmax(1) == p32.argmax(1)).all()
