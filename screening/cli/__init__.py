"""The `screen` command line: a thin Click layer over the screening library.

Exit codes (documented in `screen --help` and the README):
  0 success; 1 unexpected failure; 2 unusable input (images folder, metadata CSV, options);
  3 bundle problem; 4 backend unavailable; 5 output locked by another run;
  6 FP16 engines fail verification.
"""

from __future__ import annotations

import difflib
import os

import click

from .. import __version__
from ..errors import ScreeningError
from .engines import engines
from .folder import EXIT_CODES_HELP, folder
from .report import report
from .bundle import bundle
from .validation import calibrate, evaluate


class DefaultToFolder(click.Group):
    """`screen IMAGES_DIR ...` means `screen folder IMAGES_DIR ...`.

    Library errors (ScreeningError) become one line, ``Error: <message>``, and the error's
    documented exit code, for every subcommand.
    """

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            # A word close to a command name that is not a folder here is a typo, not a folder.
            close = difflib.get_close_matches(args[0], list(self.commands), n=1, cutoff=0.7)
            if close and not os.path.exists(args[0]):
                ctx.fail(f"No such command '{args[0]}': did you mean `{close[0]}`?")
            args = ["folder", *args]
        return super().resolve_command(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ScreeningError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from exc


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
cli.add_command(report)
cli.add_command(evaluate)
cli.add_command(calibrate)
cli.add_command(bundle)


def main() -> None:
    cli(prog_name="screen")
