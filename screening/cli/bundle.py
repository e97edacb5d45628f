"""`screen bundle list|info|verify`: which bundles are installed, what their card says, whether they are whole."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .folder import BUNDLE_ENV, default_bundle, resolve_bundle
from .paths import NonEmptyPath


@click.group()
def bundle() -> None:
    """List installed model bundles, show one's model card and figures, verify its files."""


@bundle.command("list")
@click.argument("roots", nargs=-1, type=NonEmptyPath(path_type=Path))
def list_bundles(roots: tuple[Path, ...]) -> None:
    """List the bundles in ROOTS (folders of bundles, or bundles).

    Default: the repository's engines/ folder and, if set, the folder of $SCREEN_BUNDLE.
    """
    from ..bundle_store import find_bundles

    folders = list(roots) or _default_roots()
    found = find_bundles(folders)
    if not found:
        click.echo(f"no bundles in {', '.join(map(str, folders))}")
        return
    for item in found:
        if item.manifest is None:
            click.echo(f"{str(item.path):<32} BROKEN: {item.problem}")
            continue
        m = item.manifest
        points = ", ".join(p["name"] for p in m.operating_points) or "no operating points"
        parent = f"; derived from {m.derived['from']}" if m.derived.get("from") else ""
        click.echo(f"{str(item.path):<32} {m.tag:<36} {m.created[:10]}  {len(m.classes)} classes, "
                   f"T={m.temperature:.3f}, {points}{parent}")


def _default_roots() -> list[Path]:
    roots = [default_bundle().parent] if not _env_set() else [default_bundle().parent, default_bundle()]
    return list(dict.fromkeys(roots))


def _env_set() -> bool:
    import os
    return bool(os.environ.get(BUNDLE_ENV))


@bundle.command()
@click.argument("path", required=False, type=NonEmptyPath(path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print the whole manifest as JSON: every field the file has, those this version does not know too.")
def info(path: Path | None, as_json: bool) -> None:
    """Show a bundle's model card, figures, operating points and provenance.

    PATH defaults to $SCREEN_BUNDLE, else engines/starter.
    """
    from ..manifest import load_manifest

    m = load_manifest(resolve_bundle(path), verify_files=False)
    if as_json:
        click.echo(json.dumps(m.file_content(), indent=2))
        return
    click.echo(f"{m.tag}  created {m.created}")
    click.echo(f"  classes: " + ", ".join(f"{c.name} ({c.label}{', malignant' if c.malignant else ''})"
                                        for c in m.classes))
    click.echo(f"  input {m.input_size[0]}x{m.input_size[1]}, temperature {m.temperature:.4f}")
    for key, value in m.card.items():
        click.echo(f"  {key}: {_short(value)}")
    evaluation = m.training.get("evaluation")
    if not isinstance(evaluation, dict):  # training is free-form provenance: figures only where they are an object
        evaluation = {}
    figures = {k: v for k, v in evaluation.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if figures:
        click.echo(f"  evaluation ({evaluation.get('split', '?')} split): "
                   + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()))
    if m.training.get("git_commit"):
        click.echo(f"  git commit: {m.training['git_commit']}")
    for p in m.operating_points:
        default = " (default)" if p["name"] == (m.default_operating_point or m.operating_point()["name"]) else ""
        click.echo(f"  operating point {p['name']}{default}: risk >= {p['threshold']:.4f}, sensitivity "
                   f"{p['sensitivity']:.3f}, specificity {p['specificity']:.3f} on {p['n_malignant']} malignant / "
                   f"{p['n_benign']} benign ({p['fitted_on']})")
    if not m.operating_points:
        click.echo("  no operating points (results get an empty flag column)")
    if m.derived:
        d = m.derived
        click.echo(f"  derived from {d.get('from')} ({d.get('kind')}, {d.get('when')}): {d.get('cases')} cases "
                   f"from {d.get('labels')}, temperature {d.get('from_temperature')} -> {d.get('temperature')}")
    click.echo(m.statement)


def _short(value: object, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "…"


@bundle.command()
@click.argument("path", required=False, type=NonEmptyPath(path_type=Path))
def verify(path: Path | None) -> None:
    """Check a bundle is whole: its manifest is valid and every model file matches its sha256.

    Exit 0 when it is; 3 (with the first problem) when it is not. PATH defaults to
    $SCREEN_BUNDLE, else engines/starter.
    """
    from ..manifest import load_manifest

    folder = resolve_bundle(path)
    m = load_manifest(folder, verify_files=True)
    files = ", ".join(f"{spec.file} {spec.sha256[:12]}" for spec in (m.segmenter, m.classifier))
    click.echo(f"{m.tag} in {folder}: manifest valid, model files match their sha256 ({files})")
