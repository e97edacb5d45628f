"""`screen folder`: placeholder until the screening runtime lands."""

import click


@click.command()
def folder() -> None:
    """Screen a folder of images (not implemented yet)."""
    raise click.ClickException("not implemented yet")
