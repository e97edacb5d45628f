"""Seconds per classifier training step, by memory format and compilation.

One step is what the training loop does per batch: forward, cross-entropy, backward, AdamW, on
a random batch of the config's size and input size (the config's model, frozen mask branch
included). Data loading is left out: it runs in a DataLoader worker beside the step. Each
variant runs in its own process (no warm caches or thread pools shared), two warm-up steps,
then the mean of ``--steps``. Run it with nothing else on the machine.

    python bench/train_step.py --config configs/starter_v2_stage4.yaml
    python bench/train_step.py --config runs/starter2/stage5_light.yaml --variants nchw nhwc nhwc-compile
    python bench/train_step.py --config configs/experiments/starter_v2_wr3.yaml --variants nhwc nhwc-bf16 nhwc nhwc-bf16

On these AMX cores bfloat16 autocast was slower than float32 (1.25 against 1.54-1.79 s a step,
docs/results.md), so training stays float32; the variant is here to measure it on other machines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("nchw", "nhwc", "nhwc-compile", "nhwc-bf16", "nchw-bf16")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's training code, installed or not


def measure(config_path: str, variant: str, steps: int, batch: int | None) -> dict:
    """Time ``steps`` training steps of the config's classifier in this process."""
    import torch

    from screening.metadata import DEFAULT_VOCABULARY
    from training.common import place
    from training.config import load_config
    from training.data.classes import get_class_config
    from training.models.fusion import FusionClassifier, freeze_backbones, freeze_image_stem

    torch.manual_seed(0)
    config = load_config(config_path)
    nhwc = variant.startswith("nhwc")
    classes = len(get_class_config(config.data.classes).class_names)
    net = FusionClassifier(config.classifier.model, DEFAULT_VOCABULARY.dim, classes)
    if config.classifier.freeze_mask_backbone:
        freeze_backbones(net, True, branches=("mask",))
    freeze_image_stem(net, config.classifier.frozen_image_blocks)
    net = place(net.train(), torch.device("cpu"), nhwc)
    model = torch.compile(net) if variant.endswith("compile") else net
    n, size = batch or config.classifier.optim.batch_size, config.data.input_size
    image = place(torch.randn(n, 3, size, size), torch.device("cpu"), nhwc)
    mask = place((torch.rand(n, 1, size, size) > 0.5).float(), torch.device("cpu"), nhwc)
    meta, labels = torch.zeros(n, DEFAULT_VOCABULARY.dim), torch.randint(0, classes, (n,))
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)

    # bf16 autocast: convolutions and matmuls in bfloat16 (AMX / AVX-512 BF16 where the CPU has
    # them), weights, optimizer and loss in float32.
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.endswith("bf16"))

    def step() -> None:
        optimizer.zero_grad()
        with autocast:
            logits = model(image, mask, meta)
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()
        optimizer.step()

    start = time.perf_counter()
    step(), step()
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return {"variant": variant, "batch": n, "input_size": size, "s_per_step": (time.perf_counter() - start) / steps,
            "warm_up_s": warm_up, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a training config (its classifier model and batch size)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["nchw", "nhwc"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (after 2 warm-up steps)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the config's)")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)  # one variant, in this process
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.config, args.worker, args.steps, args.batch)))
        return 0
    config = str(Path(args.config).resolve())  # the worker runs in the repository root
    print(f"{args.config}: seconds per training step (forward, backward, AdamW)")
    failed = 0
    for variant in args.variants:
        command = [sys.executable, __file__, "--config", config, "--worker", variant, "--steps", str(args.steps)]
        command += ["--batch", str(args.batch)] if args.batch else []
        run = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{variant:>13}: failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}")
            failed += 1
            continue
        result = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{variant:>13}: {result['s_per_step']:.2f} s/step (batch {result['batch']}, {result['input_size']} px, "
              f"{result['threads']} threads; warm-up {result['warm_up_s']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
