"""The training code on a GPU, as one command that prints a verdict (a few minutes on one GPU).

    python bench/gpu_training_smoke.py [--out runs/gpu_training_smoke] [--work DIR] [--device cuda]

For whoever retrains on a GPU machine: the training code's CUDA path has tests that run only
where a GPU is (tests pick ``device: auto``), and this checks it end to end. Steps, each PASS or
FAIL, then one VERDICT line:
  1 versions     torch, its CUDA, the GPU (fails without a CUDA GPU)
  2 pipeline     prepare -> segmenter -> classifier -> evaluate -> export on sample_data with
                 ``device=cuda`` (the tests' tiny config); ``device=cuda`` refuses to fall back to the CPU
  3 cpu reload   the GPU-trained checkpoints evaluated and exported again with no GPU visible (a
                 clinic's or CI's machine): they load, and give the same validation probabilities
  4 screen       ``screen folder`` (ONNX Runtime on the CPU) with the GPU-trained bundle: one ok row per image
  5 step speed   the starter recipe's classifier (random weights, 160 px): seconds per training step
                 (forward, backward, AdamW) at batch 32 and 128, as the training loop runs it (FP32, NHWC)
One log per step and summary.json land in --out (six files); the runs themselves in --work.
``--device cpu`` runs the same steps without a GPU (a dry run of this script, slow at step 5).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's code, installed or not
SAMPLE = REPO / "sample_data"
# `evaluate` and `export` run on the CPU wherever the model was trained, so the two evaluations
# compute the same thing: only float noise of another thread count may differ.
RELOAD_TOLERANCE = 1e-5


def tiny_settings(out: Path) -> list[str]:
    """The tests' tiny config (tests/conftest.py) as --set arguments, on ``out``."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import tiny_overrides  # one definition of the tiny run

    return [arg for item in tiny_overrides(out) for arg in ("--set", item)]


def training(command: str, settings: list[str], log, env: dict | None = None) -> None:
    """``python -m training COMMAND`` with ``settings``; raises on failure, output to ``log``."""
    argv = [sys.executable, "-m", "training", command, *settings]
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(f"$ python -m training {command} ({time.perf_counter() - began:.1f} s, exit {done.returncode})\n")
    log.write(done.stdout[-4000:] + "\n")
    if done.returncode:
        raise RuntimeError(f"python -m training {command} failed (exit {done.returncode}): "
                           f"{done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ''}")


def versions(log, device: str) -> dict:
    import torch

    facts = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version(), "gpu": None}
    for name in ("timm", "segmentation_models_pytorch", "onnx", "onnxruntime", "cv2", "numpy"):
        try:
            facts[name] = __import__(name).__version__
        except Exception as exc:  # a missing package is a finding, not a crash
            facts[name] = f"NOT AVAILABLE: {exc}"
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        facts["gpu"] = f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB, sm{properties.major}{properties.minor}"
    log.write(json.dumps(facts, indent=1) + "\n")
    if device == "cuda" and not facts["gpu"]:
        raise RuntimeError("no CUDA GPU visible to torch")
    return facts


def pipeline(work: Path, log, device: str) -> dict:
    settings = [*tiny_settings(work), "--set", f"device={device}"]
    prepared = subprocess.run([sys.executable, "-m", "training", "prepare", "--source", str(SAMPLE / "labels.csv"),
                               "--classes", str(REPO / "configs" / "classes" / "sample4.yaml"),
                               "--out", str(work / "index.csv")], cwd=REPO, capture_output=True, text=True)
    log.write(prepared.stdout + prepared.stderr)
    if prepared.returncode:
        raise RuntimeError("prepare failed")
    seconds = {}
    for command in ("segmenter", "classifier", "evaluate", "export"):
        began = time.perf_counter()
        training(command, settings, log)
        seconds[command] = round(time.perf_counter() - began, 1)
    return {"seconds": seconds}


def probabilities(run: Path) -> dict[str, list[float]]:
    import pandas as pd

    table = pd.read_csv(run / "classifier" / "eval" / "predictions.csv")
    numeric = [c for c in table.columns if c != "image_id" and pd.api.types.is_float_dtype(table[c])]
    return {row["image_id"]: [float(row[c]) for c in numeric] for _, row in table.iterrows()}


def cpu_reload(work: Path, log) -> dict:
    again = work.parent / f"{work.name}_cpu"
    shutil.rmtree(again, ignore_errors=True)
    shutil.copytree(work, again, ignore=shutil.ignore_patterns("bundle", "eval"))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    settings = [*tiny_settings(again), "--set", "device=cpu", "--set", f"data.index={work / 'index.csv'}"]
    training("evaluate", settings, log, env)
    training("export", settings, log, env)
    gpu, cpu = probabilities(work), probabilities(again)
    if set(gpu) != set(cpu) or not gpu:
        raise RuntimeError(f"the CPU evaluation scored other images ({len(cpu)} against {len(gpu)})")
    worst = max(abs(a - b) for key in gpu for a, b in zip(gpu[key], cpu[key]))
    log.write(f"max |p_gpu - p_cpu| over {len(gpu)} validation images: {worst:.2e}\n")
    if worst > RELOAD_TOLERANCE:
        raise RuntimeError(f"GPU and CPU probabilities differ by {worst:.2e} (> {RELOAD_TOLERANCE})")
    return {"images": len(gpu), "max_abs_probability_delta": worst}


def screen(work: Path, log) -> dict:
    import pandas as pd

    out = work / "screened.csv"
    argv = [sys.executable, "-m", "screening", "folder", str(SAMPLE / "images"), "--meta", str(SAMPLE / "patients.csv"),
            "--bundle", str(work / "bundle"), "--out", str(out), "--quiet"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    log.write(done.stdout + done.stderr)
    if done.returncode:
        raise RuntimeError(f"screen folder failed (exit {done.returncode})")
    table = pd.read_csv(out, dtype=str)
    images = len(list((SAMPLE / "images").iterdir()))
    ok = int((table["status"] == "ok").sum())
    log.write(f"{len(table)} rows for {images} images, {ok} ok\n")
    if len(table) != images or ok != images:
        raise RuntimeError(f"{len(table)} rows, {ok} ok, for {images} images")
    return {"rows": len(table), "ok": ok}


def step_speed(log, device_name: str) -> dict:
    import torch

    from screening.metadata import DEFAULT_VOCABULARY
    from training.common import place
    from training.config import load_config
    from training.models.fusion import FusionClassifier, freeze_backbones, freeze_image_stem

    device = torch.device(device_name)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    recipes = {  # weights are random: the time of a step does not depend on them
        "starter 2.2.0 (Lite0 image + frozen Lite0 mask branch)": [],
        "2-hour recipe (light mask branch, stem + 3 blocks frozen)": [
            "classifier.model.mask_backbone=mobilenetv3_small_050", "classifier.freeze_mask_backbone=false",
            "classifier.frozen_image_blocks=3"],
    }
    figures = {}
    for recipe, extra in recipes.items():
        config = load_config(REPO / "configs" / "starter_v2.yaml",
                             ["classifier.model.image_weights=null", "classifier.model.mask_weights=null", *extra])
        torch.manual_seed(0)
        net = FusionClassifier(config.classifier.model, DEFAULT_VOCABULARY.dim, 7)
        if config.classifier.freeze_mask_backbone:
            freeze_backbones(net, True, branches=("mask",))
        freeze_image_stem(net, config.classifier.frozen_image_blocks)
        net = place(net.train(), device, True)
        optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
        size = config.data.input_size
        for batch in (32, 128):
            image = place(torch.randn(batch, 3, size, size), device, True)
            mask = place((torch.rand(batch, 1, size, size) > 0.5).float(), device, True)
            meta = torch.zeros(batch, DEFAULT_VOCABULARY.dim, device=device)
            labels = torch.randint(0, 7, (batch,), device=device)

            def step() -> None:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(net(image, mask, meta), labels).backward()
                optimizer.step()

            for _ in range(5 if device.type == "cuda" else 1):
                step()
            synchronize()
            began, steps = time.perf_counter(), 30 if device.type == "cuda" else 2
            for _ in range(steps):
                step()
            synchronize()
            seconds = (time.perf_counter() - began) / steps
            figures[f"{recipe}, batch {batch}"] = {"s_per_step": seconds, "images_per_s": batch / seconds}
            log.write(f"{recipe}, batch {batch}: {seconds * 1000:.1f} ms/step, {batch / seconds:.0f} images/s\n")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_training_smoke",
                        help="logs and summary.json (default: runs/gpu_training_smoke)")
    parser.add_argument("--work", type=Path, default=None, help="where the tiny runs go (default: a temporary folder)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="where to train (default: cuda; cpu is a dry run of this script)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in [*args.out.glob("*.log"), args.out / "summary.json"]:  # an earlier run's, never read as this one's
        stale.unlink(missing_ok=True)
    work = (args.work or Path(tempfile.mkdtemp(prefix="gpu_training_smoke_"))) / "tiny"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    steps = [("versions", lambda log: versions(log, args.device)),
             ("pipeline", lambda log: pipeline(work, log, args.device)),
             ("cpu_reload", lambda log: cpu_reload(work, log)), ("screen", lambda log: screen(work, log)),
             ("step_speed", lambda log: step_speed(log, args.device))]
    summary, failed, started = {}, [], time.perf_counter()
    for name, run in steps:
        if failed and name != "step_speed":  # later steps read the earlier steps' files
            summary[name] = {"skipped": f"after {failed[0]} failed"}
            print(f"SKIP {name}")
            continue
        began = time.perf_counter()
        with open(args.out / f"{name}.log", "w") as log:
            try:
                summary[name] = {"result": run(log)}
                verdict = "PASS"
            except Exception as exc:  # every step reports; one failure must not hide the others
                summary[name] = {"error": f"{type(exc).__name__}: {exc}"}
                failed.append(name)
                verdict = f"FAIL ({type(exc).__name__}: {exc})"
        summary[name]["seconds"] = round(time.perf_counter() - began, 1)
        print(f"{verdict.split(' ')[0]} {name} ({summary[name]['seconds']} s){verdict[4:]}", flush=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    for name in ("cpu_reload", "step_speed"):
        log_file = args.out / f"{name}.log"
        for line in (log_file.read_text().splitlines() if name in summary and log_file.is_file() else []):
            if "max |p_gpu" in line or "ms/step" in line:
                print("  " + line)
    print(f"== {time.perf_counter() - started:.0f} s, logs in {args.out}")
    if failed:
        print(f"VERDICT: FAIL - {' '.join(failed)}")
        return 1
    print(f"VERDICT: PASS - the training code trains, evaluates and exports on {args.device}, and its "
          f"checkpoints reload without a GPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
