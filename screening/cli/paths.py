"""Path arguments taken as typed: the run looks each one up itself, within its time budget.

``click.Path`` calls ``os.stat`` on every value while the command line is parsed, even when the
path need not exist: on a network share that stopped answering that call blocks for as long as
the share is silent, before the run can bound anything. A night must stop with one line instead
(``screening.session.check_request`` looks the paths up in a watched thread), so ``screen
folder``, ``screen report``, ``screen evaluate`` and ``screen calibrate`` take their paths as text.

An empty path is refused: ``Path("")`` is the current folder, so ``screen folder "$IMAGES"`` with
IMAGES unset (or ``images_dir = ""`` left in a job config) would screen whatever folder the job
happened to start in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem


class TypedPath(click.ParamType):
    """A path as typed, never looked up while parsing; completed as a file name in a shell."""

    name = "path"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        if isinstance(value, Path):
            return value
        if not isinstance(value, str):  # a job config's number, list or date
            self.fail(f"must be a path, a text, got {value!r}", param, ctx)
        if not value:
            self.fail(EMPTY_PATH, param, ctx)
        return Path(value)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        return [CompletionItem(incomplete, type="file")]


PATH = TypedPath()

EMPTY_PATH = "the path is empty (an unset variable in a script, or a blank in the job config?)"


class NonEmptyPath(click.Path):
    """``click.Path`` (its file or folder checks, for commands run by hand) that refuses an empty
    value: ``Path("")`` is the current folder, whatever the script meant."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value:
            self.fail(EMPTY_PATH, param, ctx)
        return super().convert(value, param, ctx)
