"""The options that make `screen folder` a nightly job: --config, --check, --column,
--on-bundle-change, --allow-empty and --log-file.

They are added to the command by :func:`job_options`, which hands the command one
:class:`JobOptions` (``job=``) and writes every error to the log file before it reaches the
terminal, so that the morning's reader of the log sees why a night failed.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import InputError, ScreeningError
from ..stalled_reads import DEFAULT_STALL_S, read_within, stalled_line, usable_stall_s, while_progressing
from .paths import PATH

ON_BUNDLE_CHANGE = ("rescreen", "fail")  # = screening.journal.ON_BUNDLE_CHANGE (not imported: keeps --help light)
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class JobOptions:
    """What the job options asked for."""

    check: bool = False
    columns: tuple[tuple[str, str], ...] = ()  # (field, header) from --column FIELD=HEADER
    on_bundle_change: str = "rescreen"
    allow_empty: bool = False  # a folder without image files is a result (an empty CSV), not a failure
    log: Any = None  # screening.progress.LogFile for --log-file, else None


def _option_keys(command: click.Command) -> dict[str, click.Parameter]:
    """Config keys -> parameters: each option's long name without dashes (``batch-size`` and
    ``batch_size``), and ``images_dir`` / ``images`` for the argument."""
    keys: dict[str, click.Parameter] = {}
    for param in command.params:
        names = [opt.lstrip("-") for opt in param.opts if opt.startswith("--")] or [param.name]
        if isinstance(param, click.Argument):
            names = [param.name, "images"]
        for name in names:
            if name in ("config", "help"):
                continue
            keys[name] = keys[name.replace("-", "_")] = param
    return keys


def load_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """``--config job.toml``: its keys become the defaults of the options (the command line wins)."""
    if value is None:
        return None
    try:
        data = read_config(value)
        if len(data) > MAX_CONFIG_BYTES:
            raise click.BadParameter(f"{value} is larger than 1 MiB: not a job config")
        table = tomllib.loads(data.decode("utf-8"))
    except OSError as error:
        raise click.BadParameter(f"cannot read {value}: {error.strerror or error}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise click.BadParameter(f"{value} is not valid TOML: {error}") from None
    except RecursionError:  # arrays or tables nested thousands deep: a garbled file, not a job
        raise click.BadParameter(f"{value} is not valid TOML: nested too deep") from None
    keys = _option_keys(ctx.command)
    defaults: dict[str, Any] = {}
    spelled: dict[str, str] = {}  # parameter -> the key that set it
    for key, setting in table.items():
        param = keys.get(key)
        if param is None:
            valid = sorted(k for k in keys if "_" not in k or k == "images_dir")
            raise click.BadParameter(f"{value}: unknown key {key!r}; the keys are the options' names: "
                                     f"{', '.join(valid)}")
        if param.name in spelled:  # batch-size beside batch_size: the later would win without a word
            raise click.BadParameter(f"{value}: {spelled[param.name]} and {key} are the same option; keep one")
        spelled[param.name] = key
        if param.name == "columns" and isinstance(setting, dict):
            setting = [f"{name}={header}" for name, header in setting.items()]
        problem = _setting_problem(param, setting)
        if problem:
            raise click.BadParameter(f"{value}: {key} {problem}")
        defaults[param.name] = setting
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _setting_problem(param: click.Parameter, setting: Any) -> str | None:
    """What is wrong with a config value for ``param`` before Click converts it, or None.

    Click converts a command line's text; a TOML value may be a number, a list or a date, which
    its converters take for something else (``resume = 0`` and ``quiet = [true]`` were
    tracebacks) or round without a word (``batch-size = 1.9`` ran as 1, ``true`` as 1).
    """
    if isinstance(setting, dict):
        return "must be a single value, not a table"
    if getattr(param, "multiple", False):
        if not isinstance(setting, list):
            return f'must be a list, e.g. ["..."], got {setting!r}'
        if not all(isinstance(item, str) for item in setting):
            return f"must be a list of texts, got {setting!r}"
        return None
    if getattr(param, "is_bool_flag", False):  # "false" and "no" as text are Click's to read
        return None if isinstance(setting, (bool, str)) else f"must be true or false, got {setting!r}"
    if isinstance(setting, list):
        return f"must be a single value, not a list: {setting!r}"
    if not isinstance(setting, (str, int, float)):  # a TOML date or time
        return f"must be a text or a number, got {setting!r}"
    if isinstance(setting, bool):
        return f"takes a value, not true or false: {setting!r}"
    if isinstance(param.type, click.types.IntParamType) and isinstance(setting, float) \
            and not setting.is_integer():
        return f"must be a whole number, got {setting!r}"
    return None


def read_config(path: Path, stall_s: float = DEFAULT_STALL_S) -> bytes:
    """The job config's bytes (at most one more than ``MAX_CONFIG_BYTES``), read in a watched thread.

    A config on a share that stopped answering stops the command with one line once nothing has
    come for ``stall_s`` seconds. The command line's --decode-timeout is not known yet when the
    config is read (the config may set it), so the command waits its default.

    Raises:
        InputError: the config's drive stopped answering.
        OSError: the file's own errors.
    """
    return read_within(path, stall_s, lambda: InputError(
        stalled_line(f"the job config {path}", "it was being read", stall_s)), MAX_CONFIG_BYTES + 1)


def _column(text: str) -> tuple[str, str]:
    from ..patients import column_field

    name, sep, header = text.partition("=")
    if not sep or not name.strip() or not header.strip():
        raise InputError(f"--column {text!r}: write FIELD=HEADER, e.g. --column age=Alter")
    return column_field(name), header.strip()


def _check_log_file(log_file: Path, config: Path | None, params: dict[str, Any], stall_s: float) -> None:
    """Refuse a --log-file that is one of the command's inputs or outputs (the metadata CSV, an
    image, --out and the files beside it, the report, the masks, the config, the bundle), before
    a line is appended to it. The paths are looked up within ``stall_s`` seconds, as the run's own
    (screening.session.check_request): a share that stopped answering stops the command here."""
    from ..output_paths import check_log_file

    bundle = params.get("bundle")
    if bundle is None and "bundle" in params:
        from .folder import default_bundle

        bundle = default_bundle()
    while_progressing(lambda beat: check_log_file(
        log_file, images_dir=params.get("images_dir"), meta_csv=params.get("meta_csv"), output=params.get("output"),
        save_masks=params.get("save_masks"), report=params.get("report"), config=config, bundle=bundle),
        stall_s, lambda: InputError(stalled_line(f"the --log-file {log_file} or the paths it is checked against",
                                                 "they were being looked up", stall_s)))


def job_options(command: Callable) -> Callable:
    """Add the job options to a Click command function that takes ``job: JobOptions``."""

    @functools.wraps(command)
    def run(*args: Any, config: Path | None, check: bool, columns: tuple[str, ...], on_bundle_change: str,
            allow_empty: bool, log_file: Path | None, **kwargs: Any) -> Any:
        log = None
        if log_file is not None:
            from ..progress import LogFile

            # The run's limit for a silent drive (screening.stalled_reads), for the log's writes too.
            timeout = kwargs.get("decode_timeout")  # one not in (0, a day] is refused later, with its own line
            stall_s = timeout if usable_stall_s(timeout) else DEFAULT_STALL_S
            _check_log_file(log_file, config, kwargs, stall_s)
            try:
                log = LogFile(str(log_file), stall_s=stall_s)
            except OSError as error:
                raise InputError(f"cannot open --log-file {log_file}: {error.strerror or error}") from None
            ctx = click.get_current_context()
            given = ", ".join(f"{name}={value}" for name, value in ctx.params.items()
                              if value not in (None, False, ()) and name != "config")
            log.write(f"{ctx.command_path} started (pid {os.getpid()}): {given}")
        try:
            job = JobOptions(check=check, columns=tuple(_column(text) for text in columns),
                             on_bundle_change=on_bundle_change, allow_empty=allow_empty, log=log)
            return command(*args, job=job, **kwargs)
        except (ScreeningError, click.ClickException) as error:
            if log is not None:
                log.write(f"Error: {error}")
            raise
        except click.exceptions.Exit as stop:  # an interrupt (130, 143) or --check's verdict
            if log is not None and stop.exit_code != 0:
                log.write(f"Stopped with exit code {stop.exit_code}"
                          + (": interrupted; finished images are kept in the journal, rerun with --resume"
                             if stop.exit_code in (129, 130, 143) else ""))
            raise
        except BaseException as error:  # a bug or Ctrl-C outside the screening: the log says so too
            if log is not None:
                log.write(f"Error: internal failure ({error.__class__.__name__}: {' '.join(str(error).split())})")
            raise
        finally:
            if log is not None:
                log.close()

    options = [
        # Both taken as typed (cli.paths): click.Path would stat them while parsing, unbounded.
        click.option("--config", type=PATH, default=None,
                     is_eager=True, expose_value=True, callback=load_config, metavar="JOB.toml",
                     help="Read options from a TOML file: the same keys as the options (meta, out, "
                          "bundle, resume, log-file, column = [\"age=Alter\"], images_dir ...); "
                          "options given on the command line win; a file on a drive that does not answer "
                          "for 30 s stops the command (exit 2). See docs/nightly.md."),
        click.option("--check", is_flag=True,
                     help="Read the folder, the metadata CSV and the bundle, write nothing, and report "
                          "images found, rows matched and unmatched, columns used and ignored, unknown "
                          "values per field, whether the bundle is valid (exit 3 if not), the operating "
                          "point that will flag and what the journal means for the run; it runs the night's "
                          "own option, output, backend and lock checks, so it exits 2 (options, outputs, "
                          "journal), 4 (backend unavailable) or 5 (--out locked by a running screen) where "
                          "the run would stop on them."),
        click.option("--column", "columns", multiple=True, metavar="FIELD=HEADER",
                     help="The metadata CSV's own name for a field (image, patient_id, age, sex, site), "
                          "e.g. --column age=Alter; repeatable."),
        click.option("--on-bundle-change", type=click.Choice(ON_BUNDLE_CHANGE), default="rescreen",
                     show_default=True,
                     help="With --resume, when the journal is from another bundle (an edited "
                          "manifest, another --tta) or another backend: screen everything again with "
                          "this bundle and backend (a warning says so), or fail (exit 2)."),
        click.option("--allow-empty", is_flag=True,
                     help="An images folder without image files is a failure (exit 2) and the last "
                          "results are left as they were: an unmounted share or a mistyped path must "
                          "not look like a quiet night. With this flag it writes an empty results CSV."),
        click.option("--log-file", type=PATH, default=None,
                     help="Append timestamped lines to this file: the command, progress every 30 s, "
                          "warnings, errors and the summary. It may not be an input or output of the run "
                          "(the metadata CSV, an image, --out and the files beside it, the report, the "
                          "masks, the config, the bundle) nor a symbolic link (exit 2)."),
    ]
    for option in reversed(options):
        run = option(run)
    return run


def run_check(images_dir: Path, meta_csv: Path, bundle_dir: Path, job: JobOptions, run=None) -> None:
    """``--check``: print what a run would find; exit 3 when the bundle is not usable, 2 where the
    run would stop on its journal or operating point, 5 while another run holds the output lock.

    ``run`` (a ``check.PlannedRun``) carries the run's own options (output, --resume,
    --operating-point, --tta), resolved as the run would.
    """
    from ..check import PlannedRun, check_folder

    planned = dataclasses.replace(run or PlannedRun(), on_bundle_change=job.on_bundle_change)
    report = check_folder(images_dir, meta_csv, bundle_dir, dict(job.columns), allow_empty=job.allow_empty,
                          run=planned)
    for line in report.lines():
        click.echo(line)
        if job.log is not None:
            job.log.write(line)
    if not report.ok:
        raise click.exceptions.Exit(3)
