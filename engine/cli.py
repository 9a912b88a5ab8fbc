"""The engine's commands: `serve` and `token`. The `xrseg` command line (xrseg/cli.py) mounts them
beside the clients' and the models' commands; engine/ itself imports nothing from clients/.

Every failure a user can cause (a flag, a file, a port, a model that does not load) ends the
command with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from engine.logging_setup import configure_logging
from engine.options import ClipOpener, OptionError, ServeOptions

T = TypeVar("T")


def fail(message: str) -> NoReturn:
    """End the command: one line on stderr, exit code 2."""
    typer.echo(f"xrseg: {message}", err=True)
    raise typer.Exit(2)


def run_or_explain(main: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a model that cannot load or a port that is taken ends the
    command with its message, not a traceback."""
    from models.interfaces import ModelError

    try:
        return asyncio.run(main)
    except ModelError as exc:
        fail(str(exc))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(f"{exc.strerror}: another process listens there; pick another --port / --webrtc-port (0: a free one)")
        if exc.errno == errno.EADDRNOTAVAIL:
            fail(f"{exc.strerror}: --host is not an address of this machine")
        raise


def serve(options: ServeOptions, log_level: str = "INFO", open_clip: ClipOpener | None = None) -> None:
    """Run the engine: WebSocket on ws://HOST:PORT, WebRTC signalling, the web page and /health,
    /metrics on http://HOST:WEBRTC_PORT (wss/https with --tls-cert/--tls-key). engine/app.py assembles it."""
    from engine.app import run_until_stopped

    configure_logging(log_level)
    try:
        config = options.serve_config(open_clip)
    except OptionError as exc:
        fail(f"{exc.flag}: {exc}")
    tokens = options.token or ()
    page = config.webrtc is not None and config.webrtc.page is not None

    def ready(server: Any) -> None:
        for line in server.describe():
            typer.secho(line, fg="green")
        if server.webrtc is not None and page and tokens:
            typer.secho(f"web page: {server.webrtc.url}/#token={tokens[0]}", fg="green")

    run_or_explain(run_until_stopped(config, ready))


def token(
    secret_file: Annotated[Path, typer.Option(help="The engine's --token-secret-file.")],
    identity: Annotated[str, typer.Option(help="Who the token is for; the sessions it opens are theirs.")],
    ttl: Annotated[float, typer.Option(help="Seconds the token stays valid.")] = 3600.0,
) -> None:
    """Mint a signed, expiring session token (printed on stdout)."""
    from engine.auth import load_secret, mint_token

    try:
        typer.echo(mint_token(load_secret(secret_file), identity, ttl))
    except ValueError as exc:
        fail(str(exc))
