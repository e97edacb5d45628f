"""Model throughput of a bundle's TensorRT FP16 engines alone (images/s), per batch size.

Runs ``TensorRTBackend.run_batch`` (segmenter then classifier, mask kept on the GPU, inputs
copied in and outputs copied out as ``screen folder`` does) on random normalised images, after
warm-up, for at least ``--seconds`` per batch size; no decoding, no CSV. Needs a GPU, the GPU
extra and engines built with a max batch at least the largest batch asked for.

    python bench/trt_throughput.py --bundle engines/starter --batch-sizes 8 32 64
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from screening.backends.tensorrt import TensorRTBackend  # noqa: E402
from screening.manifest import load_manifest  # noqa: E402


def measure(backend: TensorRTBackend, batch: int, seconds: float, warmup: int = 3) -> dict:
    """Images per second of ``run_batch`` at one batch size."""
    manifest = backend.manifest
    height, width = manifest.input_size
    rng = np.random.default_rng(0)
    seg = rng.normal(0, 1, (batch, 3, height, width)).astype(np.float32)
    cls = rng.normal(0, 1, (batch, 3, height, width)).astype(np.float32)
    meta = np.zeros((batch, manifest.metadata.dim), np.float32)
    meta[:, 0] = 1
    for _ in range(warmup):
        backend.run_batch(seg, cls, meta)
    calls, started = 0, time.perf_counter()
    while calls < 5 or time.perf_counter() - started < seconds:
        backend.run_batch(seg, cls, meta)
        calls += 1
    elapsed = time.perf_counter() - started
    return {"batch": batch, "calls": calls, "seconds": round(elapsed, 3),
            "images_per_s": round(calls * batch / elapsed, 1), "ms_per_batch": round(1000 * elapsed / calls, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "engines" / "starter")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per batch size (default: 5)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    manifest = load_manifest(args.bundle)
    with TensorRTBackend(args.bundle, manifest, batch_size=max(args.batch_sizes)) as backend:
        results = [measure(backend, batch, args.seconds) for batch in args.batch_sizes]
        description = backend.description
    print(f"TensorRT engines alone ({manifest.tag}, {description}), "
          f"{manifest.input_size[0]}x{manifest.input_size[1]} px:")
    for result in results:
        print(f"  batch {result['batch']:>3}: {result['images_per_s']:>9.1f} images/s "
              f"({result['ms_per_batch']:.2f} ms per batch, {result['calls']} calls)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"bundle": manifest.tag, "backend": description, "results": results},
                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
