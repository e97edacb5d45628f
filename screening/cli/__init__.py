"""The `screen` command line: a thin Click layer over the screening library.

Exit codes (documented in `screen --help` and the README):
  0 success; 1 unexpected failure; 2 unusable input (images folder, metadata CSV, options);
  3 bundle problem; 4 backend unavailable; 5 output locked by another run.
"""

from __future__ import annotations

import click

from .. import __version__
from .engines import engines
from .folder import folder

EXIT_CODES_HELP = """\b
Exit codes:
  0  all images screened (error rows are results too)
  1  unexpected internal failure
  2  unusable input: images folder, metadata CSV or options
  3  model bundle missing, malformed or modified
  4  requested backend unavailable on this machine
  5  output locked by another running screen"""


class DefaultToFolder(click.Group):
    """`screen IMAGES_DIR ...` means `screen folder IMAGES_DIR ...`."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["folder", *args]
        return super().resolve_command(ctx, args)


@click.group(cls=DefaultToFolder, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="screen")
def cli() -> None:
    """Screen dermoscopy images for skin-lesion risk, offline, in batch.

    Segments each lesion, classifies it with its mask and patient metadata, and writes a CSV
    ranked by risk (most suspicious first). Not for diagnosis: results need clinical review.

    \b
    Example:
      screen folder sample_data/images --meta sample_data/patients.csv --out results.csv
    """


cli.add_command(folder)
cli.add_command(engines)


def main() -> None:
    cli(prog_name="screen")
