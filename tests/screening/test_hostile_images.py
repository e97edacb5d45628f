"""A corpus of hostile image files, generated here, one test per class: each file is one row.

Every class must end as exactly one row (or one reported line), never a crash, a hang, or a
decoder that holds a worker (or the memory) for as long as the file asks.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import Result
from hypothesis import HealthCheck, given, settings, strategies as st

import folder_runner
from bundle_factory import lesion_rgb, write_image
from hostile_files import blocky, encode, huge_headers, png_bomb, progressive_jpeg
from screening.image_header import ImageDecodeError
from screening.images import MAX_JPEG_SCANS, decode_image, discover_images
from screening.journal import journal_path
from screening.results import display_name

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("no_default_bundle")


def folder_args(images: Path, out: Path, bundle: Path, *extra: object) -> list[str]:
    # Also what the real `python -m screening` processes below run: a hang, a signal, a memory peak.
    meta = images.parent / "patients.csv"
    if not meta.exists():
        meta.write_text("image,age\nnone.png,40\n")
    return folder_runner.folder_args(images, meta, out, bundle, *extra, batch_size=2, workers=2)


def screen(images: Path, out: Path, bundle: Path, *extra: object) -> Result:
    return folder_runner.screen(*folder_args(images, out, bundle, *extra))


def rows_of(out: Path) -> dict[str, dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    by_image = {row["image"]: row for row in rows}
    assert len(by_image) == len(rows), "an image has two rows"
    return by_image


def with_good_images(images: Path) -> None:
    for index in range(2):
        write_image(images / f"good_{index}.png", lesion_rgb(index))


def assert_goods_ok(rows: dict[str, dict[str, str]]) -> None:
    assert rows["good_0.png"]["status"] == rows["good_1.png"]["status"] == "ok"


def reason(data: bytes, **limits) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, (32, 32), **limits)
    return info.value.reason


# -- truncated files -------------------------------------------------------------------------------

FORMATS = (".jpg", ".png", ".tif", ".bmp")


def test_truncated_files_of_every_format_are_error_rows(tmp_path: Path, tiny_bundle: Path) -> None:
    images = tmp_path / "images"
    with_good_images(images)
    expected = set()
    for ext in FORMATS:
        data = encode(ext, blocky(64))
        for fraction in (0.1, 0.5, 0.9):
            name = f"cut_{int(fraction * 100)}{ext}"
            (images / name).write_bytes(data[:int(len(data) * fraction)])
            expected.add(name)
    out = tmp_path / "results.csv"
    result = screen(images, out, tiny_bundle)
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    assert set(rows) == expected | {"good_0.png", "good_1.png"}
    assert_goods_ok(rows)
    for name in expected:
        assert rows[name]["status"] == "error", name
        assert rows[name]["error"] == "truncated image file" or \
            rows[name]["error"].startswith("not a readable image"), (name, rows[name]["error"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ext=st.sampled_from(FORMATS), cut=st.floats(0, 1), flips=st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4))
def test_any_cut_or_corruption_decodes_or_gives_a_reason(ext: str, cut: float,
                                                         flips: list[tuple[float, int]]) -> None:
    data = bytearray(encode(ext, blocky(48, seed=3)))
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    data = bytes(data[:max(0, int(len(data) * cut))])
    try:
        decoded = decode_image(data, (16, 16), max_decode_bytes=64 * 2**20)
    except ImageDecodeError as error:
        assert error.reason and "\n" not in error.reason
    else:
        assert decoded.rgb.ndim == 3 and decoded.rgb.shape[2] == 3


# -- headers that claim enormous pictures ----------------------------------------------------------

@pytest.mark.parametrize("size", [(60000, 50000), (9000, 9000)], ids=["over-pixel-limit", "over-memory-budget"])
def test_huge_dimension_headers_are_refused_before_any_allocation(size: tuple[int, int]) -> None:
    for name, data in huge_headers(*size).items():
        if name == "huge.jpg" and size == (9000, 9000):
            continue  # a baseline JPEG is decoded at 1/8 size: 9000 x 9000 needs only ~10 MiB
        tracemalloc.start()
        try:
            text = reason(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 2 * 2**20 + 2 * len(data), (name, peak)
        if size == (60000, 50000):
            assert text.endswith("above the 100 megapixel limit"), (name, text)
        else:
            assert text.startswith("decoding needs ") and text.endswith("above the 256 MiB limit"), (name, text)


# -- progressive JPEG with many scans --------------------------------------------------------------

def test_progressive_jpeg_with_many_scans_is_refused_from_its_header() -> None:
    data = progressive_jpeg(256, 2000)  # tens of kilobytes; minutes of decoding if let through
    started = time.monotonic()
    text = reason(data)
    assert time.monotonic() - started < 1.0
    assert text == f"progressive JPEG with 2000 scans, above the {MAX_JPEG_SCANS} scan limit " \
                   f"(decoding time grows with every scan)"
    assert decode_image(progressive_jpeg(64, 12), (64, 64)).rgb.shape == (64, 64, 3)  # ordinary ones decode


def test_a_slow_image_under_the_limits_is_stopped_by_the_time_budget_and_retried(
        tmp_path: Path, tiny_bundle: Path) -> None:
    images = tmp_path / "images"
    with_good_images(images)
    # Within the scan and memory limits, yet about a second of decoding on a 2-core machine (a
    # 1024 px one decodes in 0.12 s on a quiet machine, under the limit: the test must not
    # depend on the machine being busy).
    (images / "slow.jpg").write_bytes(progressive_jpeg(3072, MAX_JPEG_SCANS))
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    out = tmp_path / "results.csv"
    result = screen(images, out, tiny_bundle, "--decode-timeout", 0.1)
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    assert_goods_ok(rows)
    assert (rows["slow.jpg"]["status"], rows["slow.jpg"]["error"]) == \
        ("error", "decoding took longer than the 0.1 s limit per image")
    assert rows["corrupt.png"]["status"] == "error"
    # --resume screens the timed-out image again (its cause may pass), not the corrupt one.
    result = screen(images, out, tiny_bundle, "--resume", "--decode-timeout", 600)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert (summary["screened"], summary["reused"]) == (1, 3)
    assert rows_of(out)["slow.jpg"]["status"] == "ok"


def test_an_image_that_fails_again_the_same_way_is_not_new_the_next_morning(
        tmp_path: Path, tiny_bundle: Path) -> None:
    """`new` lists what changed since the last run: a file refused every night must not be news every morning."""
    images = tmp_path / "images"
    with_good_images(images)
    (images / "slow.jpg").write_bytes(progressive_jpeg(3072, MAX_JPEG_SCANS))
    out = tmp_path / "results.csv"
    assert screen(images, out, tiny_bundle, "--decode-timeout", 0.1).exit_code == 0
    assert rows_of(out)["slow.jpg"]["new"] == "yes"  # the first night: everything is news

    result = screen(images, out, tiny_bundle, "--resume", "--decode-timeout", 0.1)
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    assert (rows["slow.jpg"]["status"], rows["slow.jpg"]["new"]) == ("error", "no")
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert (summary["screened"], summary["new_rows"]) == (1, 0)  # retried, and it failed again

    # Failing another way is news, and so is the night it finally screens.
    (images / "slow.jpg").write_bytes(b"\xff\xd8" + b"\x00" * 64)
    assert screen(images, out, tiny_bundle, "--resume", "--decode-timeout", 0.1).exit_code == 0
    assert rows_of(out)["slow.jpg"]["new"] == "yes"
    (images / "slow.jpg").write_bytes(progressive_jpeg(64, 12))
    assert screen(images, out, tiny_bundle, "--resume").exit_code == 0
    assert (rows_of(out)["slow.jpg"]["status"], rows_of(out)["slow.jpg"]["new"]) == ("ok", "yes")
    assert rows_of(out)["good_0.png"]["new"] == "no"


# -- PNG bombs -------------------------------------------------------------------------------------

def test_png_bomb_is_refused_from_its_header(tmp_path: Path, tiny_bundle: Path) -> None:
    images = tmp_path / "images"
    with_good_images(images)
    bomb = png_bomb(3000, 3000)  # 16-bit RGBA: 72 MB of pixels in well under a megabyte
    assert len(bomb) < 2**20
    (images / "bomb.png").write_bytes(bomb)
    out = tmp_path / "results.csv"
    result = screen(images, out, tiny_bundle, "--max-decode-mib", 64)
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    assert_goods_ok(rows)
    assert rows["bomb.png"]["error"] == \
        "decoding needs 120 MiB (3000x3000 pixels x 4 channels x 2 bytes), above the 64 MiB limit"
    # An admin who trusts the file raises the limit: --resume screens it, not the old error row.
    result = screen(images, out, tiny_bundle, "--max-decode-mib", 256, "--resume")
    assert result.exit_code == 0, result.output
    # It reached the models; a picture of zeros (fully transparent) is no lesion to assess.
    assert rows_of(out)["bomb.png"]["error"].startswith("not assessed: the picture is mostly transparent")


# -- empty files -----------------------------------------------------------------------------------

def test_zero_byte_files_of_every_suffix_are_error_rows(tmp_path: Path, tiny_bundle: Path) -> None:
    images = tmp_path / "images"
    with_good_images(images)
    for ext in (".jpg", ".JPEG", ".png", ".bmp", ".tif", ".TIFF"):
        (images / f"empty{ext}").write_bytes(b"")
    out = tmp_path / "results.csv"
    assert screen(images, out, tiny_bundle).exit_code == 0
    rows = rows_of(out)
    assert_goods_ok(rows)
    assert {name: row["error"] for name, row in rows.items() if name.startswith("empty")} == \
        {f"empty{ext}": "empty file (0 bytes)" for ext in (".jpg", ".JPEG", ".png", ".bmp", ".tif", ".TIFF")}


# -- FIFOs, devices and sockets named like images -------------------------------------------------

def test_fifo_device_and_socket_named_like_images_are_error_rows_and_never_block(
        tmp_path: Path, tiny_bundle: Path) -> None:
    images = tmp_path / "images"
    with_good_images(images)
    os.mkfifo(images / "pipe.jpg")  # opened blocking, this would wait forever for a writer
    (images / "zero.png").symlink_to("/dev/zero")  # read whole, this would never end
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(images / "sock.png"))
    out = tmp_path / "results.csv"
    try:
        # A real process with a timeout: a hang must fail the test, not freeze it.
        done = subprocess.run([sys.executable, "-m", "screening", *folder_args(images, out, tiny_bundle)],
                              capture_output=True, text=True, timeout=300, cwd=REPO)
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    rows = rows_of(out)
    assert_goods_ok(rows)
    assert {name: rows[name]["error"] for name in ("pipe.jpg", "zero.png", "sock.png")} == {
        "pipe.jpg": "not a regular file (a FIFO)",
        "zero.png": "not a regular file (a character device)",
        "sock.png": "not a regular file (a socket)",
    }


# -- linked folders --------------------------------------------------------------------------------

def test_linked_folders_are_followed_once_and_loops_reported(tmp_path: Path, tiny_bundle: Path) -> None:
    images = tmp_path / "images"
    with_good_images(images)
    write_image(images / "day1" / "a.png", lesion_rgb(3))
    outside = tmp_path / "archive"
    write_image(outside / "b.png", lesion_rgb(4))
    (images / "day1" / "loop").symlink_to("..")  # back to the images folder
    (images / "alias").symlink_to("day1")  # a second name for a folder inside
    (images / "archive").symlink_to(outside)  # outside: followed
    (images / "archive2").symlink_to(outside)  # the same outside folder again
    (outside / "back").symlink_to(outside)  # a loop outside
    out = tmp_path / "results.csv"
    result = screen(images, out, tiny_bundle)
    assert result.exit_code == 0, result.output
    assert sorted(rows_of(out)) == ["archive/b.png", "day1/a.png", "good_0.png", "good_1.png"]
    assert sorted(result.stderr.splitlines()) == sorted([
        "Warning: linked folder alias not followed: it leads to day1 in the images folder, whose images "
        "are screened there",
        "Warning: folder archive2 not walked: it is the same folder as archive (a link loop or a second mount)",
        "Warning: folder archive/back not walked: it is the same folder as archive (a link loop or a "
        "second mount)",
        "Warning: linked folder day1/loop not followed: it leads to the images folder itself, whose "
        "images are screened there",
    ])


def test_a_dangling_link_named_like_an_image_is_an_error_row(tmp_path: Path, tiny_bundle: Path) -> None:
    images = tmp_path / "images"
    with_good_images(images)
    (images / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    out = tmp_path / "results.csv"
    assert screen(images, out, tiny_bundle).exit_code == 0
    assert rows_of(out)["gone.jpg"]["error"] == "cannot read file (No such file or directory)"


# -- names that are not UTF-8 ----------------------------------------------------------------------

def test_names_in_any_bytes_are_rows_with_escaped_names_and_resume(tmp_path: Path, tiny_bundle: Path) -> None:
    images = tmp_path / "images"
    with_good_images(images)
    raw = os.fsencode(images)
    for index, name in enumerate((b"caf\xe9.png", b"\xff\xfe\x80.jpg", b"ok\xc3\xa9.png")):
        ok, data = __import__("cv2").imencode(".png", blocky(32, seed=index))
        with open(raw + b"/" + name, "wb") as fh:
            fh.write(data.tobytes())
    out = tmp_path / "results.csv"
    result = screen(images, out, tiny_bundle)
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    assert {"caf\\xe9.png", "\\xff\\xfe\\x80.jpg", "oké.png"} <= set(rows)
    assert all(row["status"] == "ok" for row in rows.values())
    result = screen(images, out, tiny_bundle, "--resume")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert (summary["reused"], summary["screened"]) == (5, 0)  # every name read back from the journal
    assert "caf\\xe9.png" in json.dumps(summary["top_risks"]) or summary["top_risks"]


@settings(max_examples=100, deadline=None)
@given(names=st.sets(st.binary(min_size=1, max_size=40).filter(
    lambda b: b"/" not in b and b"\x00" not in b and not b.startswith(b".")), min_size=1, max_size=6))
def test_discovery_and_journal_keep_any_byte_name(tmp_path_factory, names: set[bytes]) -> None:
    from screening.results import Outcome, display_name

    folder = tmp_path_factory.mktemp("names")
    for name in names:
        with open(os.fsencode(folder) + b"/" + name + b".png", "wb"):
            pass
    found = discover_images(folder)
    assert sorted(os.fsencode(image) for image in found.images) == sorted(name + b".png" for name in names)
    for image in found.images:
        shown = display_name(image)
        shown.encode("utf-8")  # always writable to the CSV
        line = Outcome(image, "f", "error", error="x").to_json().encode("utf-8", "backslashreplace")
        assert Outcome.from_json(line.decode("utf-8")).image == image  # the journal key survives


@pytest.mark.parametrize("signum, transient", [(signal.SIGKILL, True), (signal.SIGSEGV, False)])
def test_a_decoder_killed_from_outside_is_retried_and_one_that_crashes_is_not(
        tmp_path: Path, signum: int, transient: bool) -> None:
    # SIGKILL is the out-of-memory killer's (or an admin's): another night may decode the file.
    # A decoder that crashes by itself (SIGSEGV) would crash on this file every night.
    from screening.decode_pool import DecodeLimits, DecodePool

    slow = tmp_path / "slow.jpg"
    slow.write_bytes(progressive_jpeg(4096, MAX_JPEG_SCANS))  # minutes of decoding
    with DecodePool(1, DecodeLimits(time_budget_s=120, max_decode_bytes=1 << 31)) as pool:
        def kill_the_decoder() -> None:
            # Once it is decoding: started, said it is ready, and given the file.
            deadline = time.monotonic() + 60
            while not (pool._children and pool._children[0].ready) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            os.kill(pool._children[0].process.pid, signum)

        killer = threading.Thread(target=kill_the_decoder)
        killer.start()
        with pytest.raises(ImageDecodeError) as raised:
            pool.load(slow, (64, 64))
        killer.join()
    assert raised.value.reason == f"the decoder crashed on this file (signal {signal.Signals(signum).name})"
    assert raised.value.transient is transient


# -- Ctrl-C and kill while a decoder is busy -------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_first_signal_stops_promptly_while_a_decoder_is_busy(tmp_path: Path, tiny_bundle: Path,
                                                             signum: int) -> None:
    images = tmp_path / "images"
    (images).mkdir()
    # Minutes of decoding, within the memory and scan limits: only killing the decoder ends it.
    (images / "a_slow.jpg").write_bytes(progressive_jpeg(4096, MAX_JPEG_SCANS))
    with_good_images(images)
    out = tmp_path / "out" / "results.csv"
    out.parent.mkdir()
    run = subprocess.Popen([sys.executable, "-m", "screening", *folder_args(images, out, tiny_bundle, "--batch-size", 1,
                                                                            "--workers", 1, "--decode-timeout", 600)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 240
        while not journal_path(out).exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        # The decoder child is started after the journal: wait for it rather than a fixed second,
        # which a loaded machine overran ("did not reach the slow decode"). a_slow.jpg sorts
        # first, so once started it is in the slow file.
        children = []
        while not children and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
            children = _children(run.pid)
        time.sleep(0.5)
        assert run.poll() is None and children, "the run did not reach the slow decode"
        stdout, stderr, stopped_in = folder_runner.stop_with(run, signum)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 128 + signum
    # Seconds on a quiet machine; the bound leaves room for a loaded CI runner.
    assert stopped_in < 30, f"took {stopped_in:.1f} s to stop"
    assert stderr.splitlines()[-1] == (f"Interrupted ({signal.Signals(signum).name}): finished images are kept "
                                       f"in the journal; rerun the same command with --resume to continue")
    assert all(not Path(f"/proc/{pid}").exists() for pid in children), "a decoder process outlived the run"
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.csv.journal"]  # no temp file, no lock


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            found += [int(child) for child in fh.read().split()]
    return found


# -- memory with hostile images and a decoder per CPU ----------------------------------------------

def _peak_tree_pss_mib(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``command`` and sample the PSS of it and its children (shared libraries counted once)."""
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    peak = 0
    while run.poll() is None:
        total = 0
        for pid in [run.pid, *_safe_children(run.pid)]:
            try:
                with open(f"/proc/{pid}/smaps_rollup") as fh:
                    total += sum(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
            except OSError:
                pass
        peak = max(peak, total)
        time.sleep(0.05)
    stdout, stderr = run.communicate()
    return peak / 1024, subprocess.CompletedProcess(command, run.returncode, stdout, stderr)


def _safe_children(pid: int) -> list[int]:
    try:
        return _children(pid)
    except OSError:
        return []


@pytest.mark.slow
def test_peak_memory_stays_flat_with_hostile_images_and_a_decoder_per_cpu(tmp_path: Path,
                                                                          tiny_bundle: Path) -> None:
    workers = len(os.sched_getaffinity(0))
    calm, hostile = tmp_path / "calm" / "images", tmp_path / "hostile" / "images"
    for folder in (calm, hostile):
        for index in range(8):
            write_image(folder / f"good_{index}.png", lesion_rgb(index))
    # Ordinary progressive JPEGs decode in the decoder processes too: the calm run starts as many
    # as the hostile one, so what is compared is what the hostile files add, not the processes.
    for index in range(workers):
        (calm / f"progressive_{index}.jpg").write_bytes(progressive_jpeg(256, 3))
    for name, data in {**huge_headers(), **{f"9k_{k}": v for k, v in huge_headers(9000, 9000).items()}}.items():
        (hostile / name).write_bytes(data)
    for index in range(workers):
        (hostile / f"bomb_{index}.png").write_bytes(png_bomb(4500, 4500))  # 16-bit RGBA: 283 MiB needed
        (hostile / f"scans_{index}.jpg").write_bytes(progressive_jpeg(512, 5000))
        # About 0.27 s of decoding on a quiet machine, more when loaded: always past the 0.1 s limit.
        (hostile / f"slow_{index}.jpg").write_bytes(progressive_jpeg(1536, MAX_JPEG_SCANS))
    peaks = {}
    for name, folder in (("calm", calm), ("hostile", hostile)):
        out = folder.parent / "results.csv"
        peaks[name], done = _peak_tree_pss_mib([sys.executable, "-m", "screening", *folder_args(
            folder, out, tiny_bundle, "--workers", workers, "--decode-timeout", 0.1)])
        assert done.returncode == 0, done.stderr
    rows = rows_of(hostile.parent / "results.csv")
    assert sum(row["status"] == "error" for row in rows.values()) == len(rows) - 8
    print(f"peak PSS of the process tree, {workers} decoders: calm {peaks['calm']:.0f} MiB, "
          f"hostile {peaks['hostile']:.0f} MiB")
    assert peaks["hostile"] < peaks["calm"] + 64, peaks


# -- any tree of folders and links: every entry found once, or reported ----------------------------

_NAMES = st.sampled_from(["a", "b", "c", "x.jpg", "y.png", "caf\udce9.png", "n.txt"])


@st.composite
def _trees(draw):
    """A random folder tree: files, sub-folders, and links to folders anywhere (loops included)."""
    folders = ["."]
    entries = []
    for _ in range(draw(st.integers(1, 12))):
        parent = draw(st.sampled_from(folders))
        name = draw(_NAMES)
        kind = draw(st.sampled_from(["file", "dir", "link"]))
        path = name if parent == "." else f"{parent}/{name}"
        if any(e[0] == path for e in entries):
            continue
        if kind == "dir":
            folders.append(path)
        entries.append((path, kind, draw(st.sampled_from(folders + ["../outside"]))))
    return entries


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=_trees())
def test_any_tree_of_folders_and_links_lists_each_file_once_or_reports_it(tmp_path_factory, tree) -> None:
    base = tmp_path_factory.mktemp("tree")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    (outside / "sub").mkdir(parents=True)
    (outside / "o.jpg").write_bytes(b"")
    (outside / "sub" / "p.png").write_bytes(b"")
    for path, kind, target in tree:
        where = root / path
        if not where.parent.is_dir() or os.path.lexists(where):
            continue
        if kind == "file":
            where.write_bytes(b"")
        elif kind == "dir":
            where.mkdir()
        else:
            where.symlink_to(os.path.relpath(root / target, where.parent))
    found = discover_images(root)  # terminates, whatever the loops
    listed = found.images + found.ignored
    assert len(listed) == len(set(listed))
    # the same file is never listed under two paths
    real = [os.path.realpath(root / name) for name in listed]
    assert len(real) == len(set(real))
    # every file in a real folder under root is listed; every other folder was walked or reported
    for folder, subfolders, files in os.walk(root):
        for name in files:
            relative = Path(os.path.relpath(Path(folder) / name, root)).as_posix()
            if not os.path.islink(Path(folder) / name) or os.path.exists(Path(folder) / name):
                assert relative in listed or not os.path.isfile(Path(folder) / name), relative
        for name in subfolders:
            if os.path.islink(Path(folder) / name):
                relative = Path(os.path.relpath(Path(folder) / name, root)).as_posix()
                walked = any(item.startswith(relative + "/") for item in listed)
                reported = any(f" {display_name(relative)} not " in line for line in found.skipped)
                empty = not any(os.scandir(Path(folder) / name))
                assert walked or reported or empty, (relative, found.skipped)


# -- a header that claims more picture than the file holds -------------------------------------------

@pytest.mark.parametrize("side", [5000, 9000, 9999])
def test_a_jpeg_header_claiming_more_pixels_than_its_data_can_hold_is_refused(side: int) -> None:
    # 16x16 pixels of data under a header saying side x side: libjpeg would pad the picture with
    # grey and report success, and the grey picture would be scored.
    forged = huge_headers(side, side)["huge.jpg"]
    with pytest.raises(ImageDecodeError, match=rf"too short for the {side}x{side} picture its header claims"):
        decode_image(forged, (32, 32))


@pytest.mark.parametrize("side", [16, 333, 1024])
def test_real_jpegs_of_any_size_pass_the_data_length_check(side: int) -> None:
    for data in (encode(".jpg", blocky(side)), progressive_jpeg(side, 3)):
        assert decode_image(data, (32, 32)).rgb.size > 0
