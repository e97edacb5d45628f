"""The shape arithmetic of an ONNX graph: fold its static part into constants, find FP16 left in it.

TensorRT computes "shape tensors" (the pads of a Pad, the shape of a Reshape, the sizes of a
Resize, ...) at build time and on the host, and takes them only as Int32, Int64, Bool or
Float: an FP16 tensor anywhere upstream of a shape input breaks a strongly typed build. Our
exported graphs carry a lot of such arithmetic: timm's ``tf_`` EfficientNets pad "same" at run
time (Shape -> Cast to float -> Div -> Ceil -> ... -> Pad), the U-Net decoder computes its
Resize sizes, the fusion head reshapes its tokens. Almost all of it depends only on the input
height and width, which are fixed per bundle, so it folds into constants before the FP16
conversion; what remains depends on the batch size and is integer arithmetic.

Folding is onnx-graphsurgeon's ``fold_constants(fold_shapes=True)``, repeated with ONNX shape
inference in between until nothing changes (one pass leaves most of it: the shapes it needs are
only known after the previous pass). Chosen by measurement over onnxslim and Polygraphy's
sanitizer (``bench/fp16_shape_fold.py``, figures in docs/tensorrt.md). ``onnx`` and
``onnx-graphsurgeon`` are imported lazily; they come with the ``[gpu]`` extra.
"""

from __future__ import annotations

from typing import Any

# Inputs that TensorRT reads as shape tensors, by op type: input positions (ONNX opset <= 21).
# Resize: scales and sizes (roi is ignored by TensorRT for the modes we export).
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Pad": (1, 3), "Slice": (1, 2, 3, 4), "Expand": (1,), "Resize": (2, 3),
    "Upsample": (1,), "Tile": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2), "Squeeze": (1,),
    "Unsqueeze": (1,), "TopK": (1,), "OneHot": (1,), "ReduceMean": (1,), "ReduceSum": (1,),
}
MAX_FOLD_PASSES = 12  # the starter's classifier needs 7; more means something keeps changing
FOLD_SIZE_LIMIT = 16 << 20  # bytes: never materialise a folded constant larger than this


def shape_input_cone(model: Any) -> set[str]:
    """Names of the tensors that shape inputs are computed from (the shape inputs included).

    Walks upstream from every shape input of every node; a ``Shape`` node ends the walk, since
    it reads only its input's dimensions, never its values.
    """
    producers = {output: node for node in model.graph.node for output in node.output}
    todo = [node.input[i] for node in model.graph.node for i in SHAPE_INPUTS.get(node.op_type, ())
            if i < len(node.input) and node.input[i]]
    cone: set[str] = set()
    while todo:
        name = todo.pop()
        if name in cone:
            continue
        cone.add(name)
        node = producers.get(name)
        if node is not None and node.op_type not in ("Shape", "Size"):
            todo.extend(name for name in node.input if name)
    return cone


def tensor_types(model: Any) -> dict[str, int]:
    """Element type (``onnx.TensorProto`` code) of every tensor, after ONNX shape inference."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({init.name: init.data_type for init in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def fp16_shape_tensors(model: Any) -> list[str]:
    """The FP16 tensors that shape inputs are computed from, sorted: TensorRT rejects every one."""
    from onnx import TensorProto

    types = tensor_types(model)
    return sorted(name for name in shape_input_cone(model) if types.get(name) == TensorProto.FLOAT16)


def fold_static_shapes(model: Any) -> tuple[Any, int]:
    """Fold every computation that does not depend on the batch size into constants.

    Args:
        model: an FP32 ``onnx.ModelProto`` (not modified).

    Returns:
        (the folded model, the number of passes it took).
    """
    import onnx
    import onnx_graphsurgeon as gs
    import onnxruntime

    passes = 0
    # onnx-graphsurgeon evaluates the constant subgraphs with ONNX Runtime, whose graph
    # optimiser warns about every foldable node it meets; those warnings mean nothing here.
    onnxruntime.set_default_logger_severity(3)
    try:
        with gs.logger.G_LOGGER.suppress(gs.logger.G_LOGGER.ERROR):
            while passes < MAX_FOLD_PASSES:
                passes += 1
                graph = gs.import_onnx(onnx.shape_inference.infer_shapes(model, data_prop=True))
                before = len(graph.nodes)
                graph.fold_constants(fold_shapes=True, size_threshold=FOLD_SIZE_LIMIT).cleanup().toposort()
                model = gs.export_onnx(graph)
                if len(graph.nodes) == before:
                    break
    finally:
        onnxruntime.set_default_logger_severity(2)  # ONNX Runtime's default: warnings
    return model, passes
