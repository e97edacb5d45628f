"""FP32 ONNX -> mixed-precision FP16 ONNX, the input of a strongly typed TensorRT build.

TensorRT 11 has no weak typing (no ``BuilderFlag.FP16``): precision lives in the graph. We use
onnxconverter-common's float16 pass with the graph inputs and outputs kept FP32 (the runtime
feeds and reads float32 on every backend), a few numerically sensitive op types and all shape
computations kept FP32, and the model's own Cast-to-float nodes retargeted to FP16 where the
converter made their consumers FP16 (it retypes tensors, not Cast nodes). Before converting,
the static shape arithmetic is folded into constants (``shape_tensors``): TensorRT rejects FP16
shape tensors, and unfolded it costs hundreds of Cast nodes. The result is checked with
``onnx.checker`` (full type inference), which is what a strongly typed build needs, and for FP16
tensors feeding shape inputs. ``onnx``, ``onnxconverter-common`` and ``onnx-graphsurgeon`` come
with the ``[gpu]`` extra and are imported lazily.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from ..errors import BundleError
from .environment import one_line

# Op types kept in FP32 on top of onnxconverter-common's defaults (ML operators, Resize whose
# scales must stay float, TopK, Range, Min/Max, ...), chosen from what our two models contain.
SENSITIVE_OPS = {
    # The fusion classifier's cross-attention weights: an exp and a normalising sum over the
    # image tokens; FP16 rounding flushes small weights and shifts the fused features.
    "Softmax": "attention weights (exp + normalising sum)",
    "LogSoftmax": "same arithmetic as Softmax",
    # An ensemble's output is the log of its members' mean probability (training/models/
    # ensemble.py): the small probabilities a ranking separates are FP16 subnormals.
    "Log": "log of small probabilities (ensemble output)",
    # Variance of the fused features: squares overflow FP16 above |x| ~ 256 (TensorRT itself
    # warns about FP16 LayerNorm for this reason).
    "LayerNormalization": "variance overflows FP16",
    # Mean pooling over whole feature maps and decomposed norms: long FP16 sums lose the
    # small differences the classifier head reads. One cast per pooling: cheap.
    "ReduceMean": "long sums lose precision in FP16",
    "Pow": "squares in decomposed normalisations overflow FP16",
    # torch exports a mean over whole feature maps (the classifier's pooled image vector) as
    # GlobalAveragePool: the same long sum as ReduceMean.
    "GlobalAveragePool": "long sums lose precision in FP16",
    # The classifier's in-graph mask threshold (mask > threshold): a threshold such as 0.37 is
    # not exact in FP16, and the binary mask should not depend on the precision.
    "Greater": "mask threshold comparison", "GreaterOrEqual": "mask threshold comparison",
    "Less": "mask threshold comparison", "LessOrEqual": "mask threshold comparison",
}
# onnxconverter-common keeps every Resize in FP32 because a Resize with `scales` takes them as
# float32 whatever its data type. A Resize with `sizes` (int64) has no such input: the U-Net
# decoder's nearest-neighbour upsampling runs in FP16 and saves two casts per decoder stage;
# Resize nodes with scales are kept FP32 node by node (``resize_nodes_with_scales``).
FP16_CAPABLE = {"Resize"}
# Deliberately NOT kept FP32: Sigmoid. EfficientNet's SiLU puts one after every convolution, so
# FP32 Sigmoid would wrap each activation in a cast pair and undo most of FP16's gain; the
# segmenter's final Sigmoid saturates gracefully and its 0.5 threshold is exact in FP16.


def fp32_ops() -> list[str]:
    """Every op type the conversion keeps in FP32 (recorded in each build record)."""
    from onnxconverter_common import float16

    return sorted((set(float16.DEFAULT_OP_BLOCK_LIST) | set(SENSITIVE_OPS)) - FP16_CAPABLE)


def resize_nodes_with_scales(graph: Any) -> set[str]:
    """Names of the Resize nodes given float ``scales`` (input 2) rather than int64 sizes."""
    return {node.name for node in graph.node
            if node.op_type == "Resize" and len(node.input) > 2 and node.input[2]}


def _name_nodes(graph: Any) -> None:
    # The converter names its Cast nodes after the node they guard; unnamed nodes would collide.
    taken = {node.name for node in graph.node if node.name}
    for index, node in enumerate(graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def shape_nodes(graph: Any) -> set[str]:
    """Names of the nodes that compute tensor shapes rather than image data.

    A node is one when it reads at least one shape-derived tensor (the output of a Shape/Size
    node, or of a node like this) and otherwise only constants: e.g. the dynamic "same" padding
    of timm's tf_ EfficientNets (Shape -> Cast to float -> Div -> Ceil -> ... -> Pad), where
    folding left any. They stay FP32: FP16 holds integers exactly only up to 2048, and TensorRT
    does not take FP16 shape tensors. Shape/Size themselves are not listed: they read only
    their input's dimensions, so they take an FP16 input as it is, without a cast.
    """
    constants = {init.name for init in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    derived: set[str] = set()
    names = set()
    for node in graph.node:  # ONNX graphs are topologically sorted
        inputs = [name for name in node.input if name]
        is_shape = node.op_type in ("Shape", "Size") or (
            any(name in derived for name in inputs) and all(name in derived or name in constants for name in inputs))
        if is_shape:
            if node.op_type not in ("Shape", "Size"):
                names.add(node.name)
            derived.update(node.output)
    # Constant nodes are left to the converter: their small integers (sizes, strides) are
    # exact in FP16 and reach the shape nodes through a cast back to FP32, folded at build time.
    return names


def _summarise_clamps(messages: list[str], source: str) -> list[str]:
    """One note per clamp target instead of one per weight tensor."""
    counts: dict[str, int] = {}
    others = []
    for message in messages:
        match = re.search(r"will be truncated to (\S+)", message)
        if match:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
        else:
            others.append(f"{source}: {message}")
    clamps = [f"{source}: {n} weight tensor(s) had values clamped to {target} (outside FP16's range)"
              for target, n in sorted(counts.items())]
    return clamps + sorted(set(others))


def _retarget_float_casts(model: Any, original_casts: set[str]) -> None:
    """Make the model's own Cast-to-float nodes cast to float16 where their output became FP16.

    The converter retypes tensors but not Cast nodes' ``to`` attribute, so e.g. the classifier's
    in-graph ``(mask > threshold).float()`` would still produce FP32 into FP16 consumers.
    """
    from onnx import TensorProto

    types = {v.name: v.type.tensor_type.elem_type
             for v in (*model.graph.value_info, *model.graph.output, *model.graph.input)}
    for node in model.graph.node:
        if node.op_type != "Cast" or node.name not in original_casts:
            continue
        for attr in node.attribute:
            if attr.name == "to" and attr.i == TensorProto.FLOAT and types.get(node.output[0]) == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT16


def convert_to_mixed_fp16(model: Any, source: str = "model", fold_shapes: bool = True) -> tuple[Any, list[str]]:
    """Convert an FP32 ONNX model to mixed precision; the input model is not modified.

    Args:
        model: an ``onnx.ModelProto`` with float32 weights and I/O.
        source: names the model in error messages, e.g. ``"classifier.onnx"``.
        fold_shapes: fold the static shape arithmetic first (see ``shape_tensors``). False
            gives the conversion without it, only to measure what folding changes.

    Returns:
        (the converted, checked ``onnx.ModelProto``, the converter's warnings summarised,
        e.g. how many weight tensors had values clamped to FP16's range).

    Raises:
        BundleError: the model is already FP16, the conversion gives an invalid model, or FP16
            tensors still feed shape inputs (TensorRT would refuse to build it).
    """
    import onnx
    from onnxconverter_common import float16

    from .shape_tensors import fold_static_shapes, fp16_shape_tensors

    work = onnx.ModelProto()
    work.CopyFrom(model)
    if fold_shapes:
        try:
            work, _ = fold_static_shapes(work)
        except Exception as exc:  # graphsurgeon and ONNX shape inference raise many kinds
            raise BundleError(f"cannot fold the shape computations of {source}: {one_line(exc)[:300]}") from exc
    _name_nodes(work.graph)
    original_casts = {node.name for node in work.graph.node if node.op_type == "Cast"}
    keep_fp32 = shape_nodes(work.graph) | resize_nodes_with_scales(work.graph)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            converted = float16.convert_float_to_float16(work, keep_io_types=True, op_block_list=fp32_ops(),
                                                         node_block_list=sorted(keep_fp32))
        except ValueError as exc:
            raise BundleError(f"cannot convert {source} to FP16: {one_line(exc)}") from exc
    _retarget_float_casts(converted, original_casts)
    try:
        onnx.checker.check_model(converted, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise BundleError(f"the FP16 conversion of {source} is not a valid ONNX model: "
                          f"{one_line(exc)[:300]}") from exc
    if fold_shapes:
        left = fp16_shape_tensors(converted)
        if left:
            raise BundleError(f"the FP16 conversion of {source} leaves {len(left)} FP16 tensor(s) in shape "
                              f"computations, which TensorRT refuses (first: {left[0]})")
    return converted, _summarise_clamps([one_line(w.message) for w in caught], source)


def convert_file(src: Path, dst: Path) -> list[str]:
    """Convert the ONNX file ``src`` and write the mixed-precision model to ``dst`` atomically.

    Returns:
        The converter's warnings (see ``convert_to_mixed_fp16``).
    """
    import onnx

    from ..atomic import atomic_write

    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises DecodeError, OSError, ... for unreadable files
        raise BundleError(f"cannot read {src}: {one_line(exc)}") from exc
    converted, notes = convert_to_mixed_fp16(model, Path(src).name)
    atomic_write(Path(dst), converted.SerializeToString())
    return notes


def precision_summary(model: Any) -> dict[str, Any]:
    """Counts a reader can check: initializers and graph I/O by element type, FP32 op types.

    Returns:
        ``{"initializers": {"float16": n, "float": m, ...}, "inputs": {name: type},
        "outputs": {name: type}, "cast_nodes": n}``.
    """
    from onnx import TensorProto

    def type_name(code: int) -> str:
        return TensorProto.DataType.Name(code).lower()

    initializers: dict[str, int] = {}
    for init in model.graph.initializer:
        key = type_name(init.data_type)
        initializers[key] = initializers.get(key, 0) + 1
    return {
        "initializers": initializers,
        "inputs": {v.name: type_name(v.type.tensor_type.elem_type) for v in model.graph.input},
        "outputs": {v.name: type_name(v.type.tensor_type.elem_type) for v in model.graph.output},
        "cast_nodes": sum(node.op_type == "Cast" for node in model.graph.node),
    }
