"""The ``fmal`` command line: a thin shell over :mod:`fmal.api`.

Each command parses its options, calls one API function and prints the result. Every FmalError
becomes one line on stderr and exit code 2, here in one place (``command``).

Start-up: a command module imports only typer and the standard library at the top; fmal.api (and
with it pandas, scikit-learn, FAISS) is imported inside the command function that runs. Help that
lists what a heavy module registers (strategies, formats, backends) is filled in only when that
command's own ``--help`` is shown (``lazy_help``). Measured on the 2-core machine: ``fmal --help``
went from 2.1-2.4 s (scikit-learn and scipy 0.9 s, pandas 0.3 s, FAISS 0.16 s, all unused) to
about the cost of importing typer; tests/test_cli.py checks that none of them is imported.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer
import typer.core

from fmal._version import __version__
from fmal.cli import _json
from fmal.exceptions import FmalError

# typer >= 0.22 carries its own copy of click; its commands raise that copy's exceptions
_click = getattr(typer.core, "_click", None) or __import__("click")


class _OneLineUsageError(_click.exceptions.UsageError):
    """A usage error of a command (a missing option, a budget that is not a number) shown as one
    'error:' line, like every other error."""

    def show(self, file: Any = None) -> None:
        where = f" (see {self.ctx.command_path} --help)" if self.ctx else ""
        typer.echo(f"error: {self.format_message()}{where}", err=True)


class _Commands(typer.core.TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _click.exceptions.UsageError as exc:
            if isinstance(exc, getattr(_click.exceptions, "NoArgsIsHelpError", ())):
                raise  # "no arguments: show the help" is not an error
            raise _OneLineUsageError(exc.format_message(), exc.ctx) from None


app = typer.Typer(
    cls=_Commands,
    name="fmal",
    help="Choose what to label first: embed a pool of texts, pick a diverse cold-start set, then "
    "query the rows a linear probe is least sure about.\n\n"
    "Typical loop: fmal embed data.csv --pool P; fmal seed --pool P --budget 20; label the picks; "
    "fmal query --pool P --labels labels.csv --budget 20; repeat.\n\n"
    "Environment: FMAL_MAX_RAM (e.g. 8G; default half the RAM): pools whose embeddings exceed it are "
    "read block by block, never whole. FMAL_CACHE: where ONNX exports go (default ~/.cache/fmal).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


#: the --pool option's help, the same in every command (fmal.pool.pool_path is the rule)
POOL_HELP = ("Pool: a name (a folder under --index-dir, default ./indexes), or a folder path with a '/' "
             "(./p, ../p, /data/p), used as it is and not combined with --index-dir.")


#: exit code of a command whose stdout was closed by its reader: 128 + SIGPIPE, as a shell reports
#: a writer that SIGPIPE killed (``yes | head -1``)
EXIT_BROKEN_PIPE = 128 + 13


def stdout_closed() -> NoReturn:
    """End quietly when stdout's reader has gone (``fmal query ... | head -1``): no message, since
    nothing went wrong (the work is done and recorded; the reader wanted no more). Python's recipe
    (docs of ``signal``, "Note on SIGPIPE"): point stdout at devnull, so that the flush at exit
    cannot fail again and print "Exception ignored ... BrokenPipeError"."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (tests, embedding): nothing to redirect
        pass
    raise typer.Exit(EXIT_BROKEN_PIPE)


#: API parameters whose command-line option has another name
PARAM_OPTIONS = {"random_state": "seed"}


def as_flags(exc: FmalError) -> str:
    """The message of ``exc`` with the API parameter(s) it names (``exc.param``: ``budget``, or a
    tuple of names) written as the running command's options (``--budget``): library messages name
    parameters, since API users have no flags. A name the command has no option for stays as
    written (``PARAM_OPTIONS``: API names whose option is called otherwise)."""
    msg, params = str(exc), getattr(exc, "param", None)
    ctx = _click.globals.get_current_context(silent=True)
    if not params or ctx is None:
        return msg
    for param in (params,) if isinstance(params, str) else params:
        name = PARAM_OPTIONS.get(param, param)
        opts = [o for p in ctx.command.params if p.name == name for o in p.opts]
        flag = next((o for o in opts if o.startswith("--")), None)
        if flag is None:
            continue
        # every mention but those inside a comparison ("0 < delta <= 2" stays a formula) or a
        # path ("runs/output.csv" stays a file name)
        msg = re.sub(rf"(?<![\w/.\\-])(?<![<>=] ){re.escape(param)}(?![\w/\\-])(?!\.\w)(?! [<>=])", flag, msg)
    return msg


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command body whose FmalError (and OSError, Ctrl-C) becomes one line and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except FmalError as exc:
            typer.echo(f"error: {as_flags(exc)}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:  # before OSError: stdout's reader went away (fmal status | head -1)
            stdout_closed()
        except OSError as exc:  # a path the user gave cannot be written or read (a file as folder, no permission, disk full)
            where = f"{exc.filename}: " if exc.filename else ""
            typer.echo(f"error: {where}{exc.strerror or exc}; check the path, its permissions and free space", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: finished work is kept; rerun the same command to resume", err=True)
            raise typer.Exit(130) from None

    return wrapper


class _LazyHelpCommand(typer.core.TyperCommand):
    """A command whose options' help is partly computed when its help is shown: ``lazy_help``
    maps an option's parameter name to a function returning its help text."""

    lazy_help: dict[str, Callable[[], str]] = {}

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            if param.name in self.lazy_help:
                param.help = self.lazy_help[param.name]()
        super().format_help(ctx, formatter)


def command(
    *args: Any,
    lazy_help: dict[str, Callable[[], str]] | None = None,
    json_result: str = "the command's result",
    **kwargs: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``app.command`` that turns FmalError into a one-line message and a non-zero exit code
    (:func:`guarded`), and adds ``--json``: the command's return value (its API result) printed as
    one JSON document on stdout, everything else on stderr (:mod:`fmal.cli._json`; ``json_result``
    says what it holds). ``lazy_help``: option name -> a function giving its help, called only for
    this command's --help (so that building ``fmal --help`` imports no registry)."""
    if lazy_help:
        kwargs["cls"] = type("LazyHelpCommand", (_LazyHelpCommand,), {"lazy_help": dict(lazy_help)})

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        ctx_name = args[0] if args else fn.__name__

        @functools.wraps(fn)
        def run(*a: Any, **kw: Any) -> Any:
            as_json = bool(kw.pop("json_output", False))
            if not as_json:
                try:
                    return fn(*a, **kw)
                except _json.ResultExit as done:
                    raise typer.Exit(done.code) from None
            with _json.json_mode() as (stdout, warns):
                try:
                    result, code = fn(*a, **kw), 0
                except _json.ResultExit as done:
                    result, code = done.result, done.code
            stdout.write(_json.dumps(_json.document(ctx_name, result, warns, code)) + "\n")
            stdout.flush()
            if code:
                raise typer.Exit(code)
            return None

        wrapper = guarded(run)
        sig = inspect.signature(fn, eval_str=True)
        extra = inspect.Parameter("json_output", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                  default=typer.Option(False, "--json", help=_json.HELP.format(what=json_result)))
        wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), extra])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), "json_output": bool}
        return app.command(*args, **kwargs)(wrapper)

    return deco


def strategies_help(registry: Any) -> str:
    """An option's help listing a strategy registry: each name with the first sentence of its
    docstring (``Registry.summaries``), the default first as registered."""
    return "Strategy. " + " | ".join(f"{name}: {text}" for name, text in registry.summaries().items())


def format_names() -> str:
    """The export/import formats, for a command's lazy help (fmal.export imports pandas)."""
    from fmal.export import FORMATS

    return ", ".join(FORMATS.names())


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fmal {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what fmal does (INFO level)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


from fmal.cli import audit, embed, export, import_labels, info, query, report, seed, simulate, status  # noqa: E402,F401  (register the commands)
from fmal.cli import sync  # noqa: E402,F401  (fmal sync label-studio)


def main() -> None:
    """The ``fmal`` command. stdout is flushed before exit here, so that a reader that went away
    after the last line (``| head -1``) ends the command as quietly as one that went earlier."""
    try:
        try:
            app()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        try:
            stdout_closed()
        except typer.Exit as done:
            sys.exit(done.exit_code)
