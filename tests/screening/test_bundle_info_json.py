"""`screen bundle info --json` prints the whole manifest: every field the file has, unknown ones too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from screening.cli import cli


def test_json_is_the_manifest_file_with_the_fields_this_version_does_not_know(tmp_path: Path, tiny_bundle: Path):
    bundle = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, bundle)
    data = json.loads((bundle / "manifest.json").read_text())
    # A newer export's field (tolerated: not in `requires`), and an older one's missing `tta`.
    newer = {**{k: v for k, v in data.items() if k != "tta"}, "color_profile": {"name": "sRGB"}}
    (bundle / "manifest.json").write_text(json.dumps(newer))
    result = CliRunner().invoke(cli, ["bundle", "info", str(bundle), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == newer  # nothing dropped, no default filled in
