"""The ``agc`` command: one Typer app, one module per subcommand."""

from __future__ import annotations

import os
import signal
import sys

import typer

from agc_cli import __version__
from agc_cli.cli import (
    bench,
    cluster,
    convert,
    discover,
    infer,
    profile,
    render,
    resume,
    run,
    stats,
    train,
)
from agc_cli.cli.options import gather_multi_values
from agc_cli.cli.render import err_console
from agc_cli.errors import AgcError, SettingsError, UsageError

DATA_PARALLEL = ("train", "resume")  # the commands that may run under torchrun

app = typer.Typer(
    name="agc",
    help="Attributed graph clustering at any scale: train, embed, cluster, measure.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
app.command("stats")(stats.stats)
app.command("train")(train.train)
app.command("infer")(infer.infer)
app.command("cluster")(cluster.cluster)
app.command("run")(run.run)
app.command("resume")(resume.resume)
app.command("bench")(bench.bench)
app.command("profile")(profile.profile)
app.command("convert")(convert.convert)
app.command("models")(discover.models)
app.command("datasets")(discover.datasets)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Exit codes: 0 ok, 1 internal error, 2 usage/settings, 3 input data, 4 checkpoint/resume,
    5 training diverged, 130 interrupted (checkpoint written)."""
    if "WORLD_SIZE" not in os.environ:
        return  # one process (torch is imported only by the commands that need it)
    from agc_cli.engine.distributed import DistContext

    place = DistContext.from_env()
    if place.rank > 0:
        render.set_quiet()  # rank 0 alone talks; errors still print (labelled)
    if place.enabled and ctx.invoked_subcommand not in DATA_PARALLEL:
        raise UsageError(
            f"agc {ctx.invoked_subcommand} runs in one process; under torchrun use "
            "`agc train` or `agc resume`, then infer and cluster the run without torchrun"
        )


def main() -> None:
    """Console entry point: run the app, turning AgcError into a one-line message + exit code.

    SIGTERM unwinds like Ctrl-C, so ``finally``/``with`` cleanup (temporary files, partial
    stores) runs; the trainer installs its own handler while it trains.
    """
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        _run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run() -> None:
    """The error table, in order: AgcError (its own code); Ctrl-C or SIGTERM (130, after the
    command's cleanup ran); a file-system refusal no boundary classified (an ``OSError``
    naming a file: exit 2); click's usage errors (2); anything else is an internal error (1).
    """
    # A data-parallel rank other than 0 labels its errors (each rank reports its own).
    rank = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"
    prefix = "error: " if rank == "0" else f"[rank {rank}] error: "
    try:
        argv = gather_multi_values(sys.argv[1:])
        refuse_contradictory_flags(argv)
        # A command's typer.Exit(code) comes back as code.
        code = app(args=argv, standalone_mode=False)
    except SettingsError as exc:
        for line in exc.lines():
            err_console.print(f"{prefix}{line}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except AgcError as exc:
        err_console.print(f"{prefix}{exc}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except SystemExit:
        raise
    except OSError as exc:
        if exc.filename is None or os.environ.get("AGC_DEBUG"):
            _internal(exc)
        where = f"{exc.filename} → {exc.filename2}" if exc.filename2 else str(exc.filename)
        err_console.print(f"{prefix}{where}: {exc.strerror or exc}", markup=False,
                          highlight=False)  # fmt: skip
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - last-resort handler for the user interface
        click_error, usage_error = _click_errors()
        if isinstance(exc, click_error):
            exc.show()
            sys.exit(2 if isinstance(exc, usage_error) else exc.exit_code)
        # click turns an EOFError into Abort: only a real Ctrl-C is an interruption.
        if isinstance(exc, typer.Abort) and not isinstance(exc.__context__, EOFError):
            err_console.print("aborted", markup=False)
            sys.exit(130)
        _internal(exc.__context__ if isinstance(exc, typer.Abort) else exc)
    sys.exit(code if isinstance(code, int) else 0)


def _internal(exc: BaseException) -> None:
    if os.environ.get("AGC_DEBUG"):
        raise exc
    err_console.print(
        f"internal error: {type(exc).__name__}: {exc} (set AGC_DEBUG=1 for the traceback)",
        markup=False,
        highlight=False,
    )
    sys.exit(1)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def refuse_contradictory_flags(argv: list[str]) -> None:
    """Refuse both sides of an on/off flag pair (``--mini-batch --full-batch``): click lets
    the last one win silently."""
    if not argv or argv[0].startswith("-"):
        return
    command = typer.main.get_command(app)
    sub = command.commands.get(argv[0]) if hasattr(command, "commands") else None
    if sub is None:
        return
    given = set()
    for arg in argv[1:]:
        if arg == "--":
            break
        given.add(arg.split("=", 1)[0])
    for param in sub.params:
        on = [f for f in getattr(param, "opts", []) if f in given]
        off = [f for f in getattr(param, "secondary_opts", []) if f in given]
        if on and off:
            raise UsageError(f"{on[0]} and {off[0]} contradict each other; give one of them")


def _click_errors() -> tuple[type[Exception], type[Exception]]:
    """``(ClickException, UsageError)`` of the click Typer runs on: the ``click`` package, or
    the copy newer Typer releases vendor as ``typer._click``."""
    try:
        from click import exceptions
    except ImportError:
        from typer._click import exceptions
    return exceptions.ClickException, exceptions.UsageError
