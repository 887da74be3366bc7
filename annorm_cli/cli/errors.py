"""Turn annorm's errors into one sentence on stderr and the documented exit codes:
0 success, 2 bad usage or bad input, 1 an unexpected internal error."""
from __future__ import annotations


import typer

from annorm_cli.errors import AnnormError


def fail(message: str) -> "typer.Exit":
    typer.echo(f"annorm: error: {message}", err=True)
    return typer.Exit(code=2)


INTERRUPTED = 130                  # what typer returns when Ctrl-C (or our SIGTERM handler) stopped a command
received_signal = 0                # set by the CLI's SIGTERM handler


def _interrupted(signum: int) -> int:
    typer.echo("annorm: interrupted" + (" (SIGTERM)" if signum == 15 else "") + "; no file was left half-written.",
               err=True)
    return 128 + signum


def run_guarded(app: typer.Typer, args: list[str] | None = None) -> int:
    """Run the app and map what escapes to an exit code; AnnormError becomes one stderr line."""
    try:
        result = app(args=args, standalone_mode=False, prog_name="annorm")
    except AnnormError as exc:
        typer.echo(f"annorm: error: {exc}", err=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt) as exc:
        return _interrupted(getattr(exc, "signum", None) or received_signal or 2)
    except OSError as exc:                      # a read-only or full disk, a folder that vanished mid-run
        where = f" '{exc.filename}'" if exc.filename else ""
        typer.echo(f"annorm: error: cannot read or write{where} ({exc.strerror or exc}).", err=True)
        return 2
    except Exception as exc:
        # click's usage errors (typer vendors click from 0.2x on, so match by shape, not class)
        if callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int):
            ctx = getattr(exc, "ctx", None)
            hint = f" See '{ctx.command_path} --help'." if ctx is not None else ""
            message = " ".join(exc.format_message().split())             # one line
            typer.echo(f"annorm: error: {message.rstrip('.')}.{hint}", err=True)
            return exc.exit_code
        raise
    if result == INTERRUPTED:
        return _interrupted(received_signal or 2)
    return result if isinstance(result, int) else 0
