"""configs/paper_isic.yaml: the paper-size models train a few steps, export, and pass the engine builder's CPU checks.

The architecture comes from the config unchanged (EfficientNet-B3 image and mask branches,
U-Net with a ResNet-34 encoder, paper5 classes); only the scale is shrunk: 64 px, random
weights (no hub offline), two steps per epoch, on sample_data.
"""

from pathlib import Path

import onnx
import pytest

from screening.backends import check_input_size
from screening.engines.buffers import buffer_plan
from screening.engines.fp16 import convert_to_mixed_fp16
from screening.engines.profile import profile_shapes
from screening.engines.shape_tensors import fp16_shape_tensors
from screening.manifest import load_manifest

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "paper_isic.yaml"


def tiny_scale(out: Path) -> list[str]:
    return [
        f"out_dir={out}", f"data.index={out / 'index.csv'}", "data.input_size=64", "data.workers=0",
        "segmenter.model.weights=none", "classifier.model.image_weights=none", "classifier.model.mask_weights=none",
        "segmenter.optim.epochs=1", "segmenter.optim.batch_size=4", "segmenter.optim.max_steps_per_epoch=2",
        "classifier.optim.epochs=1", "classifier.optim.batch_size=4", "classifier.optim.max_steps_per_epoch=2",
        f"export.out_dir={out / 'bundle'}", "export.parity_images=4",
    ]


def test_the_config_is_the_papers_setup():
    from training.config import load_config

    config = load_config(CONFIG)
    assert (config.segmenter.model.encoder, config.classifier.model.image_backbone,
            config.classifier.model.mask_backbone) == ("resnet34", "efficientnet_b3", "efficientnet_b3")
    assert (config.data.classes, config.data.input_size) == ("paper5", 224)
    assert (config.classifier.optim.batch_size, config.classifier.optim.epochs, config.classifier.optim.lr,
            config.classifier.optim.schedule) == (64, 50, 0.001, "plateau")
    assert config.classifier.model.heads == 8 and config.classifier.balanced_sampling


@pytest.mark.slow
def test_paper_models_train_export_and_convert_for_tensorrt(tmp_path):
    from training.config import load_config
    from training.data.prepare import main as prepare_main
    from training.evaluate import evaluate
    from training.export import export_bundle
    from training.train_classifier import train as train_classifier
    from training.train_segmenter import train as train_segmenter

    assert prepare_main(["--source", str(REPO / "sample_data" / "labels.csv"), "--classes", "paper5",
                         "--out", str(tmp_path / "index.csv")]) == 0
    config = load_config(CONFIG, tiny_scale(tmp_path))
    train_segmenter(config)
    train_classifier(config)
    evaluate(config)
    export_bundle(config)

    bundle = tmp_path / "bundle"
    manifest = load_manifest(bundle)
    assert [c.name for c in manifest.classes] == ["nv", "bkl", "mel", "bcc"]
    assert "resnet34" in manifest.segmenter.architecture and "efficientnet_b3" in manifest.classifier.architecture
    # What `screen engines build` checks and does before TensorRT sees the models.
    check_input_size(manifest)
    assert buffer_plan(manifest, 64).max_batch == 64
    for role in ("segmenter", "classifier"):
        spec = getattr(manifest, role)
        assert profile_shapes(spec, role, 32, 64)["image"].max == (64, 3, 64, 64)
        converted, _ = convert_to_mixed_fp16(onnx.load(str(bundle / spec.file)), spec.file)
        assert fp16_shape_tensors(converted) == []
