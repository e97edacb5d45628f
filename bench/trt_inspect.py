"""What TensorRT makes of a bundle's FP16 models: FP16 shape tensors in the parsed network, layer precisions in the engine.

Two checks that only TensorRT itself can make (GPU machine, ``pip install '.[gpu]'``):

- ``network``: parse mixed-precision ONNX files as strongly typed networks, exactly as
  ``screen engines build`` does, and list every FP16 tensor TensorRT marks as a shape tensor
  (it refuses to build with any) and the network's layers by output type.
- ``engine``: read built plans with TensorRT's engine inspector and count layers by the data
  type of their first output (FP16, FP32, ...), plus reformat layers. Needs engines built with
  ``screen engines build --detailed-layers``; without it the inspector shows layer names only.

    python bench/trt_inspect.py network engines/starter/trt/<key>/segmenter.fp16.onnx ...
    python bench/trt_inspect.py engine engines/starter/trt/<key>/segmenter.plan ... --out runs/layers.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from screening.engines.build import network_flags  # noqa: E402
from screening.engines.trt_logger import tensorrt_logger  # noqa: E402


def dtype_name(trt: Any, dtype: Any) -> str:
    return {trt.DataType.HALF: "fp16", trt.DataType.FLOAT: "fp32"}.get(dtype, str(dtype).split(".")[-1].lower())


def inspect_network(trt: Any, onnx_path: Path) -> dict[str, Any]:
    """Parse one ONNX file as a strongly typed network; its FP16 shape tensors and layer types."""
    builder = trt.Builder(tensorrt_logger(trt))
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, tensorrt_logger(trt))
    parsed = parser.parse_from_file(str(onnx_path))
    errors = [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]
    shape_fp16, outputs = [], Counter()
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        for j in range(layer.num_outputs):
            tensors.append(layer.get_output(j))
        if layer.num_outputs:
            outputs[dtype_name(trt, layer.get_output(0).dtype)] += 1
    for tensor in tensors:
        if getattr(tensor, "is_shape_tensor", False) and tensor.dtype == trt.DataType.HALF:
            shape_fp16.append(tensor.name)
    return {"file": str(onnx_path), "parsed": bool(parsed), "errors": errors, "layers": network.num_layers,
            "layers_by_output_type": dict(outputs), "fp16_shape_tensors": shape_fp16}


def layer_types(info: dict[str, Any]) -> Counter:
    """Layers of an engine inspector JSON by the data type of their first output."""
    counts: Counter = Counter()
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):  # names only: built without --detailed-layers
            counts["unknown (build with --detailed-layers)"] += 1
            continue
        outputs = layer.get("Outputs") or [{}]
        text = str(outputs[0].get("Format/Datatype", "")).lower()
        kind = ("fp16" if "fp16" in text or "half" in text else "fp32" if "fp32" in text or "float" in text
                else "int" if "int" in text else "bool" if "bool" in text else "other")
        counts[kind] += 1
        if "reformat" in str(layer.get("LayerType", "")).lower():
            counts["reformat layers"] += 1
    return counts


def inspect_engine(trt: Any, plan_path: Path) -> dict[str, Any]:
    """Deserialize one plan and count its layers by precision with the engine inspector."""
    runtime = trt.Runtime(tensorrt_logger(trt))
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    if engine is None:
        return {"file": str(plan_path), "error": "TensorRT cannot load this plan"}
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return {"file": str(plan_path), "layers": len(info.get("Layers", [])), "by_output_type": dict(layer_types(info))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("network", "engine"))
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    import tensorrt as trt

    results = [inspect_network(trt, f) if args.what == "network" else inspect_engine(trt, f) for f in args.files]
    bad = 0
    for result in results:
        name = Path(result["file"]).name
        if args.what == "network":
            bad += (not result["parsed"]) + len(result["fp16_shape_tensors"])
            print(f"{name}: parsed {'yes' if result['parsed'] else 'NO'} as a strongly typed network, "
                  f"{result['layers']} layers by output type {result['layers_by_output_type']}, "
                  f"FP16 shape tensors: {len(result['fp16_shape_tensors'])}"
                  + "".join(f"\n  shape tensor in FP16: {t}" for t in result["fp16_shape_tensors"][:20])
                  + "".join(f"\n  parser error: {e}" for e in result["errors"][:5]))
        elif "error" in result:
            bad += 1
            print(f"{name}: {result['error']}")
        else:
            print(f"{name}: {result['layers']} layers, by output type {result['by_output_type']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"tensorrt": trt.__version__, "results": results}, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
