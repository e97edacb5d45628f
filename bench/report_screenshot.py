"""The README's picture of the report: a sample folder of real dev images screened with
``--report``, photographed by the same headless Chromium the browser tests use.

    python bench/report_screenshot.py                  # -> docs/images/report.png
    python bench/report_screenshot.py --overlay image --out /tmp/report.png
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import REPO, SHARED_DATA, BenchError, default_bundle, link_or_copy, run_main

# A mix a morning list would have: mostly benign, some of each malignant class.
MIX = {"nv": 8, "mel": 7, "bkl": 4, "bcc": 3, "akiec": 2}
MAX_BYTES = 300_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "ham10000_dev")
    parser.add_argument("--bundle", type=Path, default=default_bundle())
    parser.add_argument("--overlay", default="outline", help="image, outline or attention-0/1 (default: outline)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "report.png")
    return parser.parse_args(argv)


def sample_folder(data: Path, dest: Path) -> tuple[Path, Path]:
    """Images of the MIX by diagnosis (first image ids of each), with a patients CSV keyed by lesion."""
    labels = data / "labels.csv"
    if not labels.is_file():
        raise BenchError(f"no labels.csv in {data}: is ../shared/data there?")
    with open(labels, newline="", encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["image_id"])
    chosen = [r for dx, n in MIX.items() for r in [r for r in rows if r["diagnosis"] == dx][:n]]
    images = dest / "images"
    images.mkdir(parents=True)
    with open(dest / "patients.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient_id", "age", "sex", "site"])
        for row in chosen:
            link_or_copy(data / row["file"], images / Path(row["file"]).name)
            writer.writerow([Path(row["file"]).name, row["lesion_id"], row["age"], row["sex"], row["site"]])
    return images, dest / "patients.csv"


def small_png(png: bytes, max_bytes: int = MAX_BYTES) -> bytes:
    """The screenshot as a 256-colour PNG, shrunk until it is under ``max_bytes``."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    while True:
        buffer = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
        if buffer.tell() <= max_bytes or image.width < 600:
            return buffer.getvalue()
        image = image.resize((int(image.width * 0.9), int(image.height * 0.9)), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import browser

    problem = browser.missing()
    if problem:
        raise BenchError(f"no browser: {problem}")
    with tempfile.TemporaryDirectory(prefix="report_shot_") as tmp:
        images, meta = sample_folder(args.data, Path(tmp))
        report = Path(tmp) / "report.html"
        command = [sys.executable, "-m", "screening", "folder", str(images), "--meta", str(meta),
                   "--out", str(Path(tmp) / "results.csv"), "--bundle", str(args.bundle), "--report", str(report),
                   "--quiet"]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            raise BenchError(f"screen folder failed: {done.stderr.strip()[-500:]}")
        with browser.chromium(width=1280, height=940) as driver:
            driver.get(report.as_uri())
            browser.wait_ready(driver)
            driver.find_element("css selector", f"input[name=overlay][value='{args.overlay}']").click()
            driver.set_script_timeout(120)
            # Lazy images below the fold would never load in a still picture: load them all.
            driver.execute_script("return Promise.all(Array.from(document.images, i => { i.loading = 'eager';"
                                  " return i.decode().catch(() => 0); }))")
            driver.execute_script("window.scrollTo(0, 0)")
            problems = browser.console_problems(driver)
            if problems:
                raise BenchError(f"console problems: {problems[:3]}")
            png = driver.get_screenshot_as_png()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(small_png(png))
    print(f"screenshot of {sum(MIX.values())} real dev images: {args.out} ({args.out.stat().st_size / 1000:.0f} KB)")
    return 0


if __name__ == "__main__":
    run_main(main)
