"""Which shape folding before the FP16 conversion: FP16 shape tensors, Cast nodes and cost per method.

For each model of a bundle and each method, folds the FP32 graph, converts it as ``screen
engines build`` does and counts what TensorRT cares about: FP16 tensors upstream of shape inputs
(it refuses them), Cast nodes (kernels and memory traffic), nodes, and the CPU seconds folding
took. Methods: ``none`` (convert the graph as exported), ``graphsurgeon`` (what the build uses:
onnx-graphsurgeon ``fold_constants(fold_shapes=True)`` repeated with ONNX shape inference),
``graphsurgeon-once`` (a single pass), ``onnxslim`` and ``polygraphy`` (its sanitizer's
constant folding); the last two run only where those packages are installed.

    python bench/fp16_shape_fold.py --bundle engines/starter --out runs/fp16_shape_fold.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import onnx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from screening.engines.fp16 import convert_to_mixed_fp16, precision_summary  # noqa: E402
from screening.engines.shape_tensors import fold_static_shapes, fp16_shape_tensors  # noqa: E402


def graphsurgeon_once(model: Any) -> Any:
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    graph.fold_constants(fold_shapes=True).cleanup().toposort()
    return gs.export_onnx(graph)


def onnxslim(model: Any) -> Any:
    import onnxslim as slim

    return slim.slim(model)


def polygraphy(model: Any) -> Any:
    from polygraphy.backend.onnx import fold_constants

    return fold_constants(model, num_passes=None, do_shape_inference=True, fold_shapes=True)


METHODS: dict[str, Callable[[Any], Any] | None] = {
    "none": None, "graphsurgeon": lambda m: fold_static_shapes(m)[0], "graphsurgeon-once": graphsurgeon_once,
    "onnxslim": onnxslim, "polygraphy": polygraphy,
}


def measure(model: Any, name: str, method: str) -> dict[str, Any]:
    fold = METHODS[method]
    started = time.process_time()
    try:
        folded = model if fold is None else fold(model)
    except ImportError as exc:
        return {"method": method, "skipped": f"not installed ({exc.name})"}
    fold_s = time.process_time() - started
    try:
        # fold_shapes=False: the method under test has folded (or, for "none", nothing has).
        converted, _ = convert_to_mixed_fp16(folded, name, fold_shapes=False)
    except Exception as exc:  # a method may leave a graph the converter cannot type
        return {"method": method, "fold_cpu_s": round(fold_s, 1), "error": " ".join(str(exc).split())[:200]}
    return {"method": method, "fold_cpu_s": round(fold_s, 1), "nodes": len(converted.graph.node),
            "cast_nodes": precision_summary(converted)["cast_nodes"],
            "fp16_shape_tensors": len(fp16_shape_tensors(converted))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "engines" / "starter")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    results = {}
    for role in ("segmenter", "classifier"):
        model = onnx.load(str(args.bundle / f"{role}.onnx"))
        results[role] = [measure(model, f"{role}.onnx", method) for method in args.methods]
        print(f"{role}.onnx ({len(model.graph.node)} nodes as exported):")
        for r in results[role]:
            detail = (r.get("skipped") or r.get("error")
                      or f"{r['fp16_shape_tensors']:>4} FP16 shape tensors, {r['cast_nodes']:>4} casts, "
                         f"{r['nodes']:>4} nodes, folding {r['fold_cpu_s']:.1f} CPU s")
            print(f"  {r['method']:<18} {detail}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"bundle": str(args.bundle), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
