"""What FP16 does to a bundle's predictions, measured on the CPU: mixed-precision ONNX vs FP32 ONNX.

Converts the bundle's two models exactly as ``screen engines build`` does before TensorRT sees
them, runs both versions with ONNX Runtime (CPU) on real images, and prints top-1 agreement and
max |delta p| against the limits of ``screen engines verify``; the full report goes to JSON.

ONNX Runtime on the CPU runs FP16 nodes with its FP16 kernels where it has them and casts to
FP32 around the others, so this measures FP16 weights and FP16 tensors between nodes, not
TensorRT's own kernels: ``screen engines verify`` on the GPU checks the real engines.

    python bench/fp16_fidelity.py --bundle engines/starter \
        --images ../shared/data/ham10000_dev/images --meta ../shared/data/ham10000_dev/labels.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime

from screening.backends.bundle import RunnerPairBackend
from screening.backends.onnxrt import OnnxRuntimeBackend, OnnxRuntimeRunner
from screening.engines.fidelity import FidelityReport, compare_backends
from screening.atomic import atomic_write_text
from screening.engines.fp16 import convert_file, fp32_ops
from screening.engines.samples import iter_batches
from screening.errors import ScreeningError
from screening.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "ham10000_dev"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "engines" / "starter",
                        help="bundle folder (default: engines/starter)")
    parser.add_argument("--images", type=Path, default=SHARED_DATA / "images",
                        help="images folder (default: ../shared/data/ham10000_dev/images)")
    parser.add_argument("--meta", type=Path, default=None,
                        help="patients/labels CSV (default: labels.csv beside the default images)")
    parser.add_argument("--limit", type=int, default=200, help="images to compare (default: 200; 0 = all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "fp16_fidelity.json",
                        help="JSON report (default: runs/fp16_fidelity.json)")
    args = parser.parse_args(argv)
    if args.meta is None and args.images == SHARED_DATA / "images" and (SHARED_DATA / "labels.csv").is_file():
        args.meta = SHARED_DATA / "labels.csv"
    return args


class ExtendedOptimisationRunner(OnnxRuntimeRunner):
    """ONNX Runtime with graph optimisations up to EXTENDED, for the FP16 models.

    ONNX Runtime 1.32's ORT_ENABLE_ALL (its layout transformations) crashes with a segmentation
    fault while loading the starter's folded FP16 classifier; EXTENDED loads and runs it. The
    level changes how ONNX Runtime fuses kernels, not the FP16 arithmetic being measured.
    """

    def session_options(self) -> onnxruntime.SessionOptions:
        options = super().session_options()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        return options


def fp16_backend(folder: Path, manifest, threads: int | None) -> RunnerPairBackend:
    def runner(role: str, spec) -> ExtendedOptimisationRunner:
        return ExtendedOptimisationRunner(folder / spec.file, threads=threads, name=role,
                                          expected_inputs=spec.inputs, expected_outputs=spec.outputs)

    return RunnerPairBackend(manifest, runner("segmenter", manifest.segmenter),
                             runner("classifier", manifest.classifier))


def measure(args: argparse.Namespace) -> tuple[FidelityReport, dict]:
    """Convert, run both precisions; returns the report and the JSON-ready result."""
    manifest = load_manifest(args.bundle)
    started = time.monotonic()
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fp16-fidelity-") as tmp:
        # The FP16 models take the FP32 files' names, so the same backend class runs both.
        notes = []
        for spec in (manifest.segmenter, manifest.classifier):
            notes += convert_file(args.bundle / spec.file, Path(tmp) / spec.file)
        batches = iter_batches(args.images, manifest, args.batch_size, args.meta, args.limit or None, skipped)
        with OnnxRuntimeBackend(args.bundle, manifest, threads=args.threads) as fp32, \
                fp16_backend(Path(tmp), manifest, args.threads) as fp16:
            report = compare_backends(manifest, fp32, fp16, batches)
    return report, {
        "bundle": manifest.tag, "bundle_dir": str(args.bundle), "images_dir": str(args.images),
        "meta": str(args.meta) if args.meta else None, "limit": args.limit, "skipped": skipped,
        "onnxruntime": onnxruntime.__version__, "fp32_ops": fp32_ops(), "converter_notes": notes,
        "seconds": round(time.monotonic() - started, 1), **report.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report, result = measure(args)
    except ScreeningError as error:
        print(f"Error: {error}", file=sys.stderr)
        return error.exit_code
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"FP16 ONNX vs FP32 ONNX ({result['bundle']}, ONNX Runtime CPU) on {result['images']} images "
          f"from {args.images}:")
    for line in report.lines():
        print(line)
    print(f"  {'PASS' if result['passed'] else 'FAIL: ' + '; '.join(result['failures'])}; report: {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
