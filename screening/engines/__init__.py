"""TensorRT FP16 engines of a bundle: naming, build records, staleness, profiles and the FP16 ONNX.

Everything here that decides something is a plain function that runs without TensorRT; only
``build`` imports TensorRT and pycuda, lazily, inside its functions.
"""

import shlex

PRECISION = "fp16"  # the only precision we build: TensorRT 11 builds it from a mixed-precision ONNX
GPU_EXTRA_HINT = "pip install '.[gpu]'"  # how a user gets tensorrt + pycuda


def rebuild_command(bundle_dir: object) -> str:
    """The exact command that (re)builds a bundle's engines for this machine."""
    return f"screen engines build --bundle {shlex.quote(str(bundle_dir))}"
