"""`annorm`: the Typer app. Heavy imports (torch) live inside the command bodies so that
`annorm --help` answers at once."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from annorm_cli import __version__
from annorm_cli.cli import bench as bench_commands
from annorm_cli.cli import evaluate as evaluate_commands
from annorm_cli.cli import train as train_commands
from annorm_cli.cli.errors import run_guarded
from annorm_cli.cli.generate import generate_command
from annorm_cli.cli.inpaint import inpaint_command
from annorm_cli.cli.visualize import visualize_command
from annorm_cli.cli.models import models_command
from annorm_cli.cli.serve import serve_command

app = typer.Typer(name="annorm", no_args_is_help=True, add_completion=True,
                  help="Conditional image generation with Attentive Normalization (CVPR 2020).")
app.add_typer(train_commands.app, name="train")
app.add_typer(bench_commands.app, name="bench")
app.add_typer(evaluate_commands.app, name="evaluate")
app.command("generate")(generate_command)
app.command("models")(models_command)
app.command("inpaint")(inpaint_command)
app.command("visualize-layout")(visualize_command)
app.command("serve")(serve_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"annorm {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                  help="Print the version and exit.")) -> None:
    """annorm: generate, inpaint and inspect images with Attentive Normalization."""


def _terminate(signum, frame) -> None:
    from annorm_cli.cli import errors
    from annorm_cli.errors import Interrupted
    errors.received_signal = signum
    raise Interrupted(signum)


def main() -> None:
    import signal
    signal.signal(signal.SIGTERM, _terminate)      # like Ctrl-C: temporary files are removed on the way out
    sys.exit(run_guarded(app))
