"""`annorm serve`: the local web page (inpaint, generate, layouts) and its API."""
from __future__ import annotations

import importlib.util

import typer

from annorm_cli.cli.errors import fail

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve_command(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on. Anything but 127.0.0.1 makes the page "
                                               "reachable from other machines."),
    port: int = typer.Option(8000, help="Port (0: any free one)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
) -> None:
    """Serve the annorm page: paint a mask and fill it, generate samples, look at AN's layouts.

    Example: annorm serve --open      (then http://127.0.0.1:8000/, the API at /docs)
    """
    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise fail("annorm serve needs the optional extra 'serve': pip install 'annorm[serve]'.")
    if not 0 <= port <= 65535:
        raise fail(f"--port must be from 0 to 65535, got {port}.")
    import shutil
    import socket
    import tempfile

    import uvicorn

    from annorm_cli.device import resolve_device
    from annorm_cli.server.app import create_app, local_hosts
    from annorm_cli.server.timeouts import KEEP_ALIVE_S, HeaderTimeoutProtocol
    resolve_device(device)                                    # an unavailable device fails here, not per request
    try:
        listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        raise fail(f"Cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host.")
    address = _address(host, listener.getsockname()[1])
    scratch = tempfile.mkdtemp(prefix="annorm-serve-")         # uploads the parser spools; removed on exit
    tempfile.tempdir = scratch
    try:
        warning = "" if host in LOCAL_HOSTS else "  (listening beyond this machine: anyone who can reach it can use it)"
        typer.echo(f"annorm serve: {address}  (API docs: {address}docs; Ctrl+C stops){warning}", err=True)
        if open_browser:
            import webbrowser
            webbrowser.open(address)
        app = create_app(device, hosts=local_hosts(host, listener.getsockname()[1]))
        config = uvicorn.Config(app, log_level="warning", access_log=False, http=HeaderTimeoutProtocol,
                                timeout_keep_alive=KEEP_ALIVE_S)
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        tempfile.tempdir = None
        shutil.rmtree(scratch, ignore_errors=True)
        listener.close()


def _address(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
