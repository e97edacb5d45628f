"""`screen engines`: placeholder until the TensorRT backend lands."""

import click


@click.group()
def engines() -> None:
    """Build, list and verify TensorRT engines (not implemented yet)."""
