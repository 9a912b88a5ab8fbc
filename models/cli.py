"""`xrseg models ...`: list the backends, check a checkpoint file, export ONNX graphs.

Mounted by the `xrseg` command line (xrseg/cli.py) as a typer sub-app (`models_app`). Exits 2
with the loader's message, one line, when a checkpoint is missing, corrupt or for another model
(the exit code of every `xrseg` command a user got wrong).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from models.checkpoints import KNOWN_CHECKPOINTS, check_file, guess_model, load_torch_state_dict
from models.interfaces import ModelError
from models.registry import list_models

models_app = typer.Typer(
    help="Model backends: list, check checkpoints, export ONNX graphs.", no_args_is_help=True
)


@models_app.callback()
def _logging(
    log_level: Annotated[str, typer.Option(help="Loader log lines to show (the answer is printed anyway).")] = "ERROR",
) -> None:
    """Loader warnings ("loaded unverified") would otherwise precede the one-line answer on stderr;
    `check` prints the digest verdict itself."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")


@models_app.command("list")
def list_cmd() -> None:
    """Every backend, the official file it loads and where that file is published."""
    for name in list_models():
        known = KNOWN_CHECKPOINTS.get(name)
        where = f"{known.filename}  <- {known.url}" if known else "no weights needed"
        typer.echo(f"{name:24s} {where}")
    typer.echo(
        f"{'clip / clip:ARCH':24s} open_clip folder (open_clip_config.json + weights) or weights file + ARCH"
    )


def _identify(path: Path) -> str:
    """Which backend a checkpoint file or folder is for, from its contents."""
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise ModelError(f"{path} has no config.json; pass --model to say what it is")
        config = json.loads(config_path.read_text())
        model_type = str(config.get("model_type", "")).removesuffix("_video")  # published: sam2_video
        if model_type == "edgetam":
            return "edgetam"
        from models.sam2.backend import SAM2_VARIANTS

        blocks = tuple(config.get("vision_config", {}).get("backbone_config", {}).get("blocks_per_stage", ()))
        for name, variant in SAM2_VARIANTS.items():
            if variant.model_type == model_type and variant.blocks_per_stage == blocks:
                return name
        raise ModelError(f"{path}: config.json is not a SAM 2.1 / EdgeTAM model; pass --model")
    state = load_torch_state_dict(check_file(path, "unknown"))
    guess = guess_model(state)
    if guess is None or guess not in KNOWN_CHECKPOINTS:
        raise ModelError(
            f"{path}: cannot tell which model this is ({guess or 'no known signature'}); pass --model"
        )
    return guess


@models_app.command("check")
def check_cmd(
    path: Annotated[Path, typer.Argument(help="checkpoint file (.pth/.pt) or transformers-format folder")],
    model: Annotated[str, typer.Option(help="registry name; guessed from the file when omitted")] = "",
) -> None:
    """Load a checkpoint fully (digest, format, keys and shapes) and say what it is."""
    from models.registry import ModelSpec, build_model

    try:
        name = model or _identify(path)
        built = build_model(ModelSpec(name, path, "cpu"))
        ckpt = check_file(path, name)
    except ModelError as err:
        typer.echo(f"xrseg: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"ok: {path} is a {built.name} checkpoint ({ckpt.size_bytes} bytes, sha256 {ckpt.sha256})")
    typer.echo(
        "digest: matches the official file" if ckpt.verified else "digest: not in our table (unverified)"
    )


@models_app.command("export")
def export_cmd(
    name: Annotated[str, typer.Argument(help="registry name, e.g. mobile_sam")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="the official checkpoint file or folder")],
    out: Annotated[
        Path | None, typer.Option(help="folder for the .onnx files (default: export cache)")
    ] = None,
    encoder: Annotated[
        bool, typer.Option(help="also export the image encoder (SAM ViT-B/L, MobileSAM)")
    ] = False,
) -> None:
    """Export the decoder graphs (and optionally the image encoder) of a checkpoint to ONNX."""
    try:
        if name in ("sam_vit_b", "sam_vit_l", "sam_vit_h", "mobile_sam"):
            from models.sam.backend import build_sam_vit, export_decoder, export_encoder, load_sam

            if name == "mobile_sam":
                from models.mobile_sam.build import build_mobile_sam_architecture as build
            else:

                def build():
                    return build_sam_vit(name)

            net, ckpt = load_sam(name, checkpoint, build)
            paths = export_decoder(net, name, ckpt.sha256, out)
            if encoder:
                if name == "sam_vit_h":
                    raise ModelError(
                        "ViT-H's encoder exceeds the 2 GB single-file ONNX limit; it stays on torch"
                    )
                paths["encoder"] = export_encoder(net, name, ckpt.sha256, out)
        elif name.startswith("sam2.1_") or name == "edgetam":
            from models.sam2.backend import export_decoder as export_sam2_decoder
            from models.sam2.backend import load_sam2

            net, ckpt = load_sam2(name, checkpoint)
            paths = export_sam2_decoder(net, name, ckpt.sha256, out)
        else:
            raise ModelError(f"{name!r} has no ONNX export; choose a SAM-family model")
    except ModelError as err:
        typer.echo(f"xrseg: {err}", err=True)
        raise typer.Exit(2) from None
    for graph, path in paths.items():
        typer.echo(f"{graph:16s} {path}")
