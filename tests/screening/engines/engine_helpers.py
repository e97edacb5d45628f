"""Helpers for the engine tests: in-memory manifests, fake bundles, engine folders, a tiny real ONNX bundle.

The fake bundle has arbitrary bytes as its "ONNX" files (with matching sha256), enough for
everything that reads only the manifest; the tiny bundle has real conv + attention models
exported by torch, for the FP16 conversion and ONNX Runtime comparisons.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from screening.engines.naming import GpuInfo, engine_dir
from screening.engines.profile import profile_shapes
from screening.engines.record import BuildRecord, ModelBuild, save_record
from screening.manifest import ClassSpec, Manifest, ModelSpec, save_manifest, sha256_file
from screening.metadata import DEFAULT_VOCABULARY

HAM7 = [("akiec", True), ("bcc", True), ("bkl", False), ("df", False), ("mel", True), ("nv", False), ("vasc", False)]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
H100 = GpuInfo("NVIDIA H100 80GB HBM3", (9, 0))
TRT = "10.13.0.35"


def make_manifest(size: int = 64, seg_sha: str = "a" * 64, cls_sha: str = "b" * 64) -> Manifest:
    """A valid manifest for 7 classes at ``size`` x ``size`` px."""
    h = w = size
    dim = DEFAULT_VOCABULARY.dim
    return Manifest(
        name="tiny", version="0.1", created="2025-01-01T00:00:00Z",
        classes=[ClassSpec(code, code, malignant) for code, malignant in HAM7],
        input_size=(size, size),
        segmenter=ModelSpec("segmenter.onnx", seg_sha, {"image": ["N", 3, h, w]}, {"mask": ["N", 1, h, w]},
                            IMAGENET_MEAN, IMAGENET_STD),
        classifier=ModelSpec("classifier.onnx", cls_sha,
                             {"image": ["N", 3, h, w], "mask": ["N", 1, h, w], "meta": ["N", dim]},
                             {"logits": ["N", len(HAM7)]}, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]),
        metadata=DEFAULT_VOCABULARY,
    )


def write_bundle(folder: Path, segmenter: bytes, classifier: bytes, size: int = 64) -> Manifest:
    """Write a bundle whose manifest matches the given model files' bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "segmenter.onnx").write_bytes(segmenter)
    (folder / "classifier.onnx").write_bytes(classifier)
    manifest = make_manifest(size, sha256_file(folder / "segmenter.onnx"), sha256_file(folder / "classifier.onnx"))
    save_manifest(manifest, folder)
    return manifest


def make_record(manifest: Manifest, gpu: GpuInfo = H100, trt: str = TRT, opt: int = 4, max_batch: int = 8,
                warnings: list[str] | None = None) -> BuildRecord:
    models = {role: ModelBuild(onnx_sha256=getattr(manifest, role).sha256, fp16_onnx_sha256="c" * 64,
                               plan=f"{role}.plan", plan_sha256="d" * 64,
                               profile=profile_shapes(getattr(manifest, role), role, opt, max_batch))
              for role in ("segmenter", "classifier")}
    return BuildRecord(bundle=manifest.tag, tensorrt_version=trt, gpu=gpu, models=models,
                       built_at="2025-02-03T04:05:06+00:00", build_seconds=123.4, workspace_bytes=2 << 30,
                       fp32_ops=["LayerNormalization", "Softmax"], warnings=warnings or [])


def write_engine_folder(bundle: Path, record: BuildRecord, gpu: GpuInfo = H100, trt: str = TRT,
                        plans: bool = True) -> Path:
    """An engine folder as a build leaves it (plans are placeholder bytes), named for gpu/trt."""
    folder = engine_dir(bundle, gpu, trt)
    folder.mkdir(parents=True, exist_ok=True)
    if plans:
        for build in record.models.values():
            (folder / build.plan).write_bytes(b"plan")
    save_record(record, folder)
    return folder




# -- a tiny real bundle, exported by torch ---------------------------------------------------------

SIZE = 64


def torch_models():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Segmenter(nn.Module):
        """Encoder, nearest-neighbour upsampling (ONNX Resize) and a sigmoid head, like the U-Net."""

        def __init__(self) -> None:
            super().__init__()
            self.down = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(16, 8, 3, 1, 1), nn.ReLU(),
                                    nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(8, 1, 3, 1, 1))

        def forward(self, image):
            return torch.sigmoid(self.up(self.down(image)))

    class Fusion(nn.Module):
        """Image tokens as keys/values, metadata and mask vectors as queries (8 heads), like the classifier."""

        def __init__(self, meta_dim: int, classes: int, d: int = 32) -> None:
            super().__init__()
            self.image = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.SiLU(),
                                       nn.Conv2d(16, d, 3, 2, 1), nn.BatchNorm2d(d), nn.SiLU(),
                                       nn.Conv2d(d, d, 3, 2, 1), nn.SiLU())
            self.mask = nn.Sequential(nn.Conv2d(1, 8, 5, 4, 2), nn.ReLU(), nn.Conv2d(8, d, 3, 2, 1), nn.ReLU())
            self.tokens = nn.Linear(d, d)
            self.meta = nn.Sequential(nn.Linear(meta_dim, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Dropout(0.1))
            self.attention = nn.MultiheadAttention(d, 8, batch_first=True)
            self.norm = nn.LayerNorm(d)
            self.head = nn.Sequential(nn.Linear(3 * d, d), nn.ReLU(), nn.Linear(d, classes))

        def forward(self, image, mask, meta):
            fmap = self.image(image)
            tokens = self.tokens(fmap.flatten(2).transpose(1, 2))
            binary = (mask > 0.5).float()
            queries = torch.stack([self.meta(meta), self.mask(binary).mean(dim=(2, 3))], dim=1)
            fused, _ = self.attention(queries, tokens, tokens)
            fused = self.norm(fused)
            return self.head(torch.cat([fused[:, 0], fused[:, 1], fmap.mean(dim=(2, 3))], dim=1))

    torch.manual_seed(0)
    segmenter, classifier = Segmenter().eval(), Fusion(DEFAULT_VOCABULARY.dim, len(HAM7)).eval()
    with torch.no_grad():
        for module in (*segmenter.modules(), *classifier.modules()):
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        classifier.head[-1].weight.mul_(8.0)  # spread the logits like a trained model's
    return torch, segmenter, classifier


def export_onnx(torch, model, inputs: dict, outputs: list[str], path: Path) -> Path:
    """TorchScript export at opset 17 with a dynamic batch axis (tracer warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(inputs.values()), str(path), input_names=list(inputs), output_names=outputs,
                          opset_version=17, dynamo=False,
                          dynamic_axes={name: {0: "N"} for name in [*inputs, *outputs]})
    return path


def build_tiny_bundle(folder: Path) -> tuple[Path, Manifest]:
    """Export a real 64 px bundle into ``folder``: conv segmenter with Resize + fusion classifier with attention."""
    torch, segmenter, classifier = torch_models()
    folder.mkdir(parents=True)
    image = torch.randn(2, 3, SIZE, SIZE)
    export_onnx(torch, segmenter, {"image": image}, ["mask"], folder / "segmenter.onnx")
    meta = torch.zeros(2, DEFAULT_VOCABULARY.dim)
    meta[:, 0] = 1
    export_onnx(torch, classifier, {"image": image, "mask": torch.rand(2, 1, SIZE, SIZE), "meta": meta},
                ["logits"], folder / "classifier.onnx")
    manifest = make_manifest(SIZE, sha256_file(folder / "segmenter.onnx"), sha256_file(folder / "classifier.onnx"))
    save_manifest(manifest, folder)
    return folder, manifest


def write_images(folder: Path, count: int, size: tuple[int, int] = (48, 60), seed: int = 0) -> list[Path]:
    """``count`` smooth synthetic RGB images (a bright blob on skin-like noise) as PNGs."""
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        height, width = size
        image = rng.normal((180, 140, 120), 20, (height, width, 3))
        yy, xx = np.mgrid[:height, :width]
        cy, cx, r = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width, rng.uniform(5, 15)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] *= rng.uniform(0.2, 0.6)
        path = folder / f"img_{i:02d}.png"
        cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8)[..., ::-1])
        paths.append(path)
    return paths


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
