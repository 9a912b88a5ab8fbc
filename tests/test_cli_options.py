"""Flags defined once: `serve`, `webrtc serve` and `demo` take the model, device, CLIP and ICE
flags from the same dataclasses (engine/options.py), and what a command line parses is the typed
value the code below takes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from engine.options import IceOptions, ModelOptions, OptionError, ServeOptions
from xrseg.cli import app
from xrseg.options import flags_from_options


def flags(*path: str) -> set[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {p.name for p in command.params if p.param_type_name == "option"}


def test_engine_commands_share_the_model_and_ice_flags() -> None:
    shared = {f.name for f in dataclasses.fields(ModelOptions)} | {f.name for f in dataclasses.fields(IceOptions)}
    assert shared <= flags("serve") and shared <= flags("demo")
    assert flags("webrtc", "serve") == flags("serve")  # the alias is the same command


def test_parsed_flags_arrive_as_the_dataclasses() -> None:
    seen: list[ServeOptions] = []
    toy = typer.Typer()

    @toy.command()
    @flags_from_options
    def serve(options: ServeOptions, log_level: str = "INFO") -> None:
        seen.append(options)

    args = ["--token", "a", "--token", "b", "--device", "cuda:1", "--ice-server", "stun:h:3478", "--loopback", "--port", "0"]
    result = CliRunner().invoke(toy, args)
    assert result.exit_code == 0, result.output
    [options] = seen
    assert options.token == ["a", "b"] and options.port == 0
    assert options.model == ModelOptions(device="cuda:1")
    assert options.ice.ice_server == ["stun:h:3478"] and options.ice.loopback
    config = options.serve_config()
    assert config.engine.device == "cuda:1" and config.engine.tokens == ("a", "b")
    assert config.webrtc is not None and config.webrtc.host_addresses == ("127.0.0.1",)
    assert [s.urls for s in config.webrtc.ice_servers] == ["stun:h:3478"]


@dataclasses.dataclass(frozen=True)
class Clashing:
    device: str = "cpu"


def test_a_flag_defined_twice_is_refused_at_definition() -> None:
    def command(options: ModelOptions, other: Clashing) -> None: ...

    with pytest.raises(TypeError, match="device"):
        flags_from_options(command)


def test_serve_options_refuse_what_cannot_serve(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="--token-secret-file") as no_token:
        ServeOptions().serve_config()
    assert no_token.value.flag == "--token"
    with pytest.raises(OptionError, match="both --tls-cert and --tls-key"):
        ServeOptions(token=["t"], tls_cert=tmp_path / "c.pem").serve_config()
    with pytest.raises(OptionError, match="cannot read clip folders"):
        ServeOptions(token=["t"], clip=[tmp_path]).serve_config(open_clip=None)
