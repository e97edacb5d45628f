"""`--out` checked against the inputs and the output folder before any work: exit 2, one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bundle_factory import lesion_rgb, write_image
from folder_runner import error_line, run_folder as run
from screening.images import discover_images
from screening.journal import journal_path, lock_path
from screening.session import FolderRequest, discover


pytestmark = pytest.mark.usefixtures("no_default_bundle")


def test_out_is_the_metadata_csv(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    before = meta.read_bytes()
    assert error_line(run(images, meta, meta, tiny_bundle)) == \
        f"Error: --out {meta} is the metadata CSV {meta}: choose another output file"
    link = tmp_path / "link.csv"
    link.symlink_to(meta)
    assert error_line(run(images, meta, link, tiny_bundle)) == \
        f"Error: --out {link} is the metadata CSV {meta}: choose another output file"
    hard = tmp_path / "hard.csv"
    os.link(meta, hard)
    assert error_line(run(images, meta, hard, tiny_bundle)) == \
        f"Error: --out {hard} is the metadata CSV {meta}: choose another output file"
    assert meta.read_bytes() == before


def test_a_file_beside_out_is_the_metadata_csv(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, _ = make_folder(2)
    meta = tmp_path / "r.csv.journal"
    meta.write_text("image,age\nimg_000.jpg,40\n")
    out = tmp_path / "r.csv"
    assert error_line(run(images, meta, out, tiny_bundle)) == \
        f"Error: --out {out} would write {meta}, which is the metadata CSV {meta}: choose another output file"


def test_out_inside_the_images_folder(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    for out in (images / "results.csv", images / "img_001.png", images / "sub" / ".." / "r.csv"):
        (images / "sub").mkdir(exist_ok=True)
        assert error_line(run(images, meta, out, tiny_bundle)) == \
            f"Error: --out {out} is inside the images folder {images}: write the results outside it"
    assert sorted(p.name for p in images.iterdir()) == ["img_000.jpg", "img_001.png", "sub"]


def test_out_is_an_image_linked_into_the_folder(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    elsewhere = write_image(tmp_path / "elsewhere" / "photo.png", lesion_rgb(5))
    (images / "linked.png").symlink_to(elsewhere)
    assert error_line(run(images, meta, elsewhere, tiny_bundle)) == \
        f"Error: --out {elsewhere} is an image being screened: choose another output file"


def test_unusable_output_locations(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    long_name = tmp_path / ("r" * 250 + ".csv")
    assert error_line(run(images, meta, long_name, tiny_bundle)) == (
        f"Error: --out {long_name} is too long a file name for its folder ({'r' * 250}.summary.json "
        f"would have 263 bytes, the limit is 255)")
    assert error_line(run(images, meta, tmp_path, tiny_bundle)) == \
        f"Error: --out {tmp_path} is a folder: give a file name such as {tmp_path / 'results.csv'}"
    assert error_line(run(images, meta, tmp_path / "gone" / "r.csv", tiny_bundle)) == \
        f"Error: the folder of --out {tmp_path / 'gone' / 'r.csv'} does not exist"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_output_folder(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    assert error_line(run(images, meta, locked / "r.csv", tiny_bundle)) == \
        f"Error: cannot write to the folder of --out {locked / 'r.csv'}: permission denied"


def test_a_planted_journal_link_is_refused(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    out = tmp_path / "results.csv"
    target = tmp_path / "victim.txt"
    journal_path(out).symlink_to(target)  # dangling: a plain open() would create the target
    for _ in range(2):
        assert error_line(run(images, meta, out, tiny_bundle, "--resume")) == (
            f"Error: cannot open the journal {out}.journal: it is a symbolic link (refusing to follow it)")
        assert not out.exists() and not lock_path(out).exists()
        assert target.exists() == (_ == 1)
        target.write_text("precious")
    assert error_line(run(images, meta, out, tiny_bundle, "--resume")) == (
        f"Error: cannot open the journal {out}.journal: it is a symbolic link (refusing to follow it)")
    assert target.read_text() == "precious"


def test_planted_links_in_the_masks_folder_are_not_followed(tmp_path: Path, tiny_bundle: Path) -> None:
    images = tmp_path / "images"
    write_image(images / "a.png", lesion_rgb(1))
    write_image(images / "nested" / "b.png", lesion_rgb(2))
    meta = tmp_path / "p.csv"
    meta.write_text("image,age\na.png,40\nnested/b.png,50\n")
    masks, outside = tmp_path / "masks", tmp_path / "outside"
    masks.mkdir()
    outside.mkdir()
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    (masks / "a.png.mask.png").symlink_to(victim)
    (masks / "nested").symlink_to(outside)
    out = tmp_path / "results.csv"
    result = run(images, meta, out, tiny_bundle, "--save-masks", masks)
    assert result.exit_code == 0, result.output
    assert victim.read_bytes() == b"precious" and not (masks / "a.png.mask.png").is_symlink()
    assert list(outside.iterdir()) == []
    rows = out.read_text(encoding="utf-8-sig")
    assert f"mask not saved ({masks / 'nested'} leads outside {masks} through a symbolic link)" in rows


def test_output_files_get_normal_permissions(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    out = tmp_path / "results.csv"
    previous = os.umask(0o027)
    try:
        assert run(images, meta, out, tiny_bundle, "--save-masks", tmp_path / "masks").exit_code == 0
        out.chmod(0o664)  # an administrator opened it to a group
        journal_path(out).unlink()
        assert run(images, meta, out, tiny_bundle, "--resume").exit_code == 0
    finally:
        os.umask(previous)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.rglob("*") if p.is_file()
             and p.parent != images and "patients" not in p.name}
    assert modes.pop("results.csv") == oct(0o664)
    assert set(modes.values()) == {oct(0o640)}, modes
    assert {"results.csv.journal", "results.summary.json", "img_000.jpg.mask.png"} <= set(modes)


# -- the --out check costs no lookup per image --------------------------------------------------

def test_out_is_a_linked_image_inside_a_linked_folder(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    """A link to the journal, found in a folder that is itself a link: still an image being screened."""
    images, meta = make_folder(1)
    out = tmp_path / "results" / "r.csv"
    out.parent.mkdir()
    elsewhere = tmp_path / "elsewhere"
    write_image(elsewhere / "day" / "photo.png", lesion_rgb(5))
    (elsewhere / "day" / "then.png").symlink_to(journal_path(out))  # not written yet: a dangling link
    (images / "linked").symlink_to(elsewhere)
    assert error_line(run(images, meta, out, tiny_bundle)) == \
        f"Error: --out {out} would write {journal_path(out)}, which is an image being screened: " \
        f"choose another output file"
    assert not out.exists() and not journal_path(out).exists()


def test_discovery_gives_the_real_path_of_every_image_reached_through_a_link(tmp_path: Path) -> None:
    """Whatever the links, an image's real path is either in the images folder under its own name
    or the one discovery gives (what the --out check compares, with no lookup of its own)."""
    images = tmp_path / "images"
    outside = tmp_path / "outside"
    for path in (images / "plain" / "a.png", outside / "b.png", outside / "deeper" / "c.png",
                 tmp_path / "far" / "d.png", tmp_path / "far" / "e.png"):
        write_image(path, lesion_rgb(1))
    (images / "linked").symlink_to(outside)  # a linked folder with a plain sub-folder
    (outside / "deeper" / "far").symlink_to(tmp_path / "far")  # a link inside a linked folder
    (outside / "e.png").symlink_to(tmp_path / "far" / "e.png")  # a linked file inside a linked folder
    (images / "plain" / "f.png").symlink_to(tmp_path / "far" / "d.png")  # a linked file
    found = discover_images(images)
    assert found.images == ["linked/b.png", "linked/deeper/c.png", "linked/deeper/far/d.png",
                            "linked/deeper/far/e.png", "linked/e.png", "plain/a.png", "plain/f.png"]
    real_images = os.path.realpath(images)
    for image in found.images:
        real = os.path.realpath(images / image)
        assert found.linked.get(image, os.path.join(real_images, image)) == real, image
    assert sorted(found.linked) == [image for image in found.images if image != "plain/a.png"]


def test_the_out_check_looks_up_no_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a network share every lookup is a round trip: checking --out against 300 images must not
    resolve each one's real path (5 lookups an image, one per folder of its path, before)."""
    images = tmp_path / "images"
    for index in range(300):
        folder = images / f"day_{index // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img_{index:03d}.jpg").write_bytes(b"\xff\xd8" + bytes(98))
    meta = tmp_path / "patients.csv"
    meta.write_text("image,age\n")
    out = tmp_path / "results" / "r.csv"
    out.parent.mkdir()
    lookups = []
    for name in ("stat", "lstat"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda path, *a, real=real, **kw: lookups.append(path) or real(path, *a, **kw))
    discovery = discover(FolderRequest(images_dir=images, meta_csv=meta, output=out, bundle_dir=tmp_path / "bundle"))
    assert len(discovery.images) == 300
    assert len(lookups) < 100, f"{len(lookups)} lookups for 300 images"  # about 60: outputs, folders, CSV
