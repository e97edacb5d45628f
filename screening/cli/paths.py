"""Path arguments taken as typed: the run looks each one up itself, within its time budget.

``click.Path`` calls ``os.stat`` on every value while the command line is parsed, even when the
path need not exist: on a network share that stopped answering that call blocks for as long as
the share is silent, before the run can bound anything. A night must stop with one line instead
(``screening.session.check_request`` looks the paths up in a watched thread), so ``screen
folder`` and ``screen report`` take their paths as text.
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
        return value if isinstance(value, Path) else Path(value)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        return [CompletionItem(incomplete, type="file")]


PATH = TypedPath()
