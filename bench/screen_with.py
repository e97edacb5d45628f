"""Run the ``screen`` command with the ONNX Runtime session settings of a bench variant.

    python bench/screen_with.py no-spin folder IMAGES --meta patients.csv --backend onnxruntime

The variant (see ``ort_variants.py``) is applied to every ONNX Runtime session the run opens;
everything else is ``screen`` itself. For side-by-side measurements only.
"""

from __future__ import annotations

import sys

from ort_variants import SESSION_VARIANTS, install


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in SESSION_VARIANTS:
        sys.exit(f"usage: screen_with.py VARIANT SCREEN-ARGS...; "
                 f"VARIANT is one of {', '.join(SESSION_VARIANTS)}")
    install(argv[0])
    from screening.cli import main as screen

    sys.argv = ["screen", *argv[1:]]
    screen()


if __name__ == "__main__":
    main(sys.argv[1:])
