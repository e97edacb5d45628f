"""`screen engines` and the TensorRT backend load no GPU or ONNX tooling until a command needs it."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("tensorrt", "pycuda", "onnx", "onnxconverter_common", "torch")
SCRIPT = f"""
import json, sys
import screening.cli, screening.backends, screening.backends.tensorrt
import screening.engines.build, screening.engines.fp16, screening.engines.staleness, screening.engines.samples
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
"""


def test_importing_the_engine_code_loads_no_heavy_package():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
