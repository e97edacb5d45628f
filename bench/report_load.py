"""How fast a big report opens in a real browser (Debian's Chromium), and its size per 1,000 images.

Builds the report of an N-row run (default 10,000) with the same code ``screen report`` uses:
thumbnails, lesion outlines (the data set's own masks) and 5 x 5 attention maps from M real dev
images (default 1,000), cycled over the N rows. Then opens it from ``file://`` in headless
Chromium R times and reports, per load: time to interactive (navigation start to the first
page drawn and every control wired, ``window.reportReadyMs``), the load event, and how long
the next page and a patient search take to redraw.

    python bench/report_load.py                       # 10,000 rows over 1,000 ham10000_dev images
    python bench/report_load.py --rows 2000 --images 200 --repeats 5
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness import (SHARED_DATA, BenchError, default_bundle, default_out, machine_info, read_dataset,
                     run_main, warn_if_busy, write_json)

GOAL_S = 3.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "ham10000_dev",
                        help="data set with labels.csv and masks/ (default: ../shared/data/ham10000_dev)")
    parser.add_argument("--rows", type=int, default=10_000, help="report rows (default: 10000)")
    parser.add_argument("--images", type=int, default=1000, help="distinct real images (default: 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="page loads timed (default: 3)")
    parser.add_argument("--bundle", type=Path, default=default_bundle(), help="bundle for class names")
    parser.add_argument("--keep", type=Path, default=None, help="build the report in this folder and keep it")
    parser.add_argument("--out", type=Path, default=default_out("report_load"),
                        help="JSON report (default: bench/results/report_load.json)")
    return parser.parse_args(argv)


def with_attention(manifest):
    """The bundle's manifest as if its classifier gave 2 x 5 x 5 attention maps (for the page's size)."""
    outputs = {**manifest.classifier.outputs, "attention": ["N", 2, 5, 5]}
    return dataclasses.replace(manifest, classifier=dataclasses.replace(manifest.classifier, outputs=outputs),
                               attention_queries=["meta", "mask"])


def write_views(data: Path, count: int, report: Path, manifest) -> list[str]:
    """Thumbnails, outlines and attention maps of ``count`` real images; returns their names."""
    import cv2
    from screening.images import load_image
    from screening.report.render import asset_folder
    from screening.report.views import ViewWriter, thumbnail

    labelled = read_dataset(data)[:count]
    rng = np.random.default_rng(0)
    names = []
    # The bundle the results name (write_results: the tag): the report shows no other bundle's pictures.
    with ViewWriter(asset_folder(report), manifest.attention_queries, manifest.mask_threshold,
                    bundle=manifest.identity) as writer:
        for item in labelled:
            decoded = load_image(item.path, manifest.input_size)
            mask_path = data / "masks" / (item.path.stem + ".png")
            mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) if mask_path.is_file() else None
            mask = None if mask is None else cv2.resize(mask, manifest.input_size[::-1]) / 255.0
            attention = rng.dirichlet(np.ones(25), size=2).reshape(2, 5, 5).astype(np.float32)
            writer.add(item.path.name, thumbnail(decoded.rgb), mask, attention)
            names.append(item.path.name)
    return names


def write_results(path: Path, names: list[str], rows: int, manifest) -> None:
    """A results CSV of ``rows`` rows cycling over ``names`` (copy k of x.jpg is k/x.jpg)."""
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(len(manifest.classes)), size=rows)
    malignant = manifest.malignant_indices
    risk = probabilities[:, malignant].sum(axis=1)
    order = np.argsort(-risk, kind="stable")
    header = ["rank", "image", "patient_id", "risk", "flag", "prediction", "confidence",
              *(f"p_{c}" for c in manifest.class_names), "lesion_area", "status", "error", "warnings", "bundle"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for rank, index in enumerate(order, start=1):
            p = probabilities[index]
            best = int(np.argmax(p))
            writer.writerow([rank, f"{index // len(names):03d}/{names[index % len(names)]}", f"P{index // 3:05d}",
                             f"{risk[index]:.6f}", "refer" if risk[index] >= 0.5 else "routine",
                             manifest.class_names[best], f"{p[best]:.6f}", *(f"{x:.6f}" for x in p),
                             f"{rng.uniform(0.05, 0.4):.6f}", "ok", "", "", manifest.tag])


def copy_views(report: Path, rows: int, names: list[str]) -> None:
    """Every row's view points at the thumbnail of the real image it cycles over."""
    from screening.report.render import asset_folder
    from screening.report.views import VIEWS_FILE, View, read_views

    folder = asset_folder(report)
    views = read_views(folder)
    with open(folder / VIEWS_FILE, "w", encoding="utf-8") as handle:
        for index in range(rows):
            source = views[names[index % len(names)]]
            view = View(f"{index // len(names):03d}/{source.image}", source.thumb, source.size, source.outline,
                        source.attention, bundle=source.bundle)
            handle.write(view.to_json() + "\n")


def time_loads(report: Path, repeats: int) -> list[dict[str, float]]:
    import browser

    problem = browser.missing()
    if problem:
        raise BenchError(f"no browser: {problem}")
    loads = []
    with browser.chromium() as driver:
        for _ in range(repeats):
            driver.get("about:blank")
            driver.get(report.as_uri())
            browser.wait_ready(driver, timeout=120)
            timing = driver.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "return {ready: window.reportReadyMs, dom: n.domContentLoadedEventEnd, load: n.loadEventEnd};")
            redraw = driver.execute_script("""
                const t0 = performance.now(); document.getElementById('next').click(); const t1 = performance.now();
                const box = document.getElementById('filter-patient'); box.value = 'P0001';
                box.dispatchEvent(new Event('input')); const t2 = performance.now();
                return {next_page: t1 - t0, search: t2 - t1};""")
            problems = browser.console_problems(driver)
            if problems:
                raise BenchError(f"console problems: {problems[:3]}")
            # Interactive: the first page drawn, every control wired, and the DOMContentLoaded
            # handlers done; whichever is later.
            loads.append({"interactive_ms": max(timing["ready"], timing["dom"]), "first_page_drawn_ms": timing["ready"],
                          "dom_content_loaded_ms": timing["dom"],
                          "load_event_ms": timing["load"], "next_page_ms": redraw["next_page"],
                          "search_ms": redraw["search"]})
    return loads


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from screening.manifest import load_manifest
    from screening.report.build import ReportRequest, build_report
    from screening.report.render import asset_folder

    machine = machine_info()
    warn_if_busy(machine)
    manifest = with_attention(load_manifest(args.bundle, verify_files=False))
    with tempfile.TemporaryDirectory(prefix="report_load_") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        report = folder / "report.html"
        names = write_views(args.data, args.images, report, manifest)
        thumbs_mb = sum(p.stat().st_size for p in (asset_folder(report) / "thumbs").iterdir()) / 1e6
        write_results(folder / "results.csv", names, args.rows, manifest)
        copy_views(report, args.rows, names)
        start = time.perf_counter()
        build_report(ReportRequest(results=folder / "results.csv", images_dir=None, out=report, manifest=manifest))
        build_s = time.perf_counter() - start
        html_mb = report.stat().st_size / 1e6
        loads = time_loads(report, args.repeats)
    median = {key: round(statistics.median(load[key] for load in loads), 1) for key in loads[0]}
    per_1000 = html_mb * 1000 / args.rows + thumbs_mb * 1000 / len(names)
    result: dict[str, Any] = {"rows": args.rows, "distinct_images": len(names), "machine": machine,
                              "build_s": round(build_s, 2), "html_mb": round(html_mb, 2),
                              "thumbnails_mb_per_1000": round(thumbs_mb * 1000 / len(names), 2),
                              "mb_per_1000_images": round(per_1000, 2), "loads": loads, "median": median}
    write_json(args.out, result)
    print(f"report of {args.rows} rows ({len(names)} distinct real images): built in {build_s:.1f} s, "
          f"HTML {html_mb:.1f} MB")
    print(f"size per 1,000 images: {html_mb * 1000 / args.rows:.2f} MB HTML + "
          f"{thumbs_mb * 1000 / len(names):.2f} MB thumbnails = {per_1000:.2f} MB")
    print(f"Chromium, median of {len(loads)} loads: interactive {median['interactive_ms']:.0f} ms "
          f"(goal < {GOAL_S * 1000:.0f} ms; first page drawn {median['first_page_drawn_ms']:.0f} ms), DOMContentLoaded {median['dom_content_loaded_ms']:.0f} ms, "
          f"load event {median['load_event_ms']:.0f} ms; next page {median['next_page_ms']:.0f} ms, "
          f"patient search {median['search_ms']:.0f} ms")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
