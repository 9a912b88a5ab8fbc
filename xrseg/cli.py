"""`xrseg`: the one command line. It assembles what each package owns:

    xrseg serve | token        the engine's commands (engine/cli.py)
    xrseg webrtc serve         the same command as `xrseg serve`, same flags (kept as an alias)
    xrseg stream               the clients' streaming command (clients/stream_cli.py)
    xrseg webrtc stream        its WebRTC short form (clients/webrtc_cli.py)
    xrseg models ...           the model backends (models/cli.py)
    xrseg demo                 the demo, an app above the engine and the clients (xrseg/demo/)

This package is the only one that imports both engine/ and clients/ (tests/test_layering.py
holds engine/ to that). It also gives the engine what the engine must not import: how to read
a --clip folder (xrseg/clips.py).
"""

from __future__ import annotations

import json

import typer

from engine.system import SystemLibraryError, check_system_libraries, onnxruntime_builds_problem

try:
    check_system_libraries()
except SystemLibraryError as exc:
    raise SystemExit(f"xrseg: {exc}") from None
if (problem := onnxruntime_builds_problem()) is not None:
    typer.echo(f"xrseg: warning: {problem}", err=True)

from clients.session import Transport  # noqa: E402  (after the check: these import open3d)
from clients.stream_cli import stream as stream_command  # noqa: E402
from clients.webrtc_cli import stream as webrtc_stream_command  # noqa: E402
from engine import cli as engine_cli  # noqa: E402
from engine.logging_setup import configure_logging  # noqa: E402
from engine.options import OptionError, ServeOptions  # noqa: E402
from models.cli import models_app  # noqa: E402
from xrseg.clips import open_clip  # noqa: E402
from xrseg.demo.options import DemoOptions  # noqa: E402
from xrseg.options import flags_from_options  # noqa: E402

app = typer.Typer(help="xrseg: real-time streaming segmentation for AR/VR.", no_args_is_help=True, add_completion=False)
webrtc_app = typer.Typer(help="WebRTC: serve (alias of `xrseg serve`), or stream an RGB-D sequence over it.",
                         no_args_is_help=True)  # fmt: skip


@flags_from_options
def serve(options: ServeOptions, log_level: str = "INFO") -> None:
    """Run the engine: WebSocket on ws://HOST:PORT; WebRTC signalling, the web page, /health and
    /metrics on http://HOST:WEBRTC_PORT (wss/https with --tls-cert/--tls-key)."""
    engine_cli.serve(options, log_level, open_clip=open_clip)


@flags_from_options
def demo(options: DemoOptions, log_level: str = "WARNING") -> None:
    """Stream an RGB-D sequence to an in-process engine over a real WebSocket (or WebRTC) and save what comes back."""
    from clients.sources.folder import SequenceError

    configure_logging(log_level)
    out = options.out
    try:
        if options.capture:
            if options.transport != Transport.WS:
                engine_cli.fail("--capture streams over the WebSocket; leave out --transport")
            from xrseg.demo.capture import run_capture_demo

            engine_config = options.model.engine_config(port=0)
            sequence = None if options.synthetic else options.sequence
            result = engine_cli.run_or_explain(
                run_capture_demo(out, sequence, options.max_frames, engine_config, synthetic=options.synthetic)
            )
            typer.echo(json.dumps(result, indent=2))
            typer.secho(f"wrote {out}/capture/: mesh.ply, mesh.obj, mesh.glb, view0-2.png, tracked_masks.png, coco/, store/",
                        fg="green")  # fmt: skip
            return
        from xrseg.demo.run import run_demo

        summary = engine_cli.run_or_explain(run_demo(options.demo_config()))
    except SequenceError as exc:
        engine_cli.fail(f"--sequence: {exc}")
    except OptionError as exc:
        engine_cli.fail(f"{exc.flag}: {exc}")
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "latency_ms"}, indent=2))
    for stage, s in summary["latency_ms"].items():
        typer.echo(f"  {stage:>18}: p50 {s['p50']:7.1f} ms   p95 {s['p95']:7.1f} ms   (n={s['n']})")
    typer.secho(f"wrote {out}/summary.json, {out}/index.html, {out}/contact_sheet.png, overlays/, segments/", fg="green")


app.command()(demo)
app.command()(serve)
app.command()(engine_cli.token)
app.command("stream")(stream_command)
app.add_typer(models_app, name="models", help="List, check and export model backends.")
webrtc_app.command("serve", help="Alias of `xrseg serve`: the same command, the same flags.")(serve)
webrtc_app.command("stream")(webrtc_stream_command)
app.add_typer(webrtc_app, name="webrtc")


if __name__ == "__main__":
    app()
