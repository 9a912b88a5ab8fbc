"""The table of official checkpoint files we know, and the checks every loader runs first.

Like open_clip's `pretrained.py`, the table lets an error say exactly which file a model expected
and where its publisher hosts it, with no network. Nothing here downloads anything: our machines
and many users' machines have no route to the weights, so the user passes a local path.

Digests: a SHA-256 is listed only where we are sure of it. A file whose model has no known digest
loads with a warning that says so; a file whose digest is known and differs is refused.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from models.interfaces import CheckpointError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownCheckpoint:
    """One official weights file.

    Attributes:
        model: our registry name ("sam_vit_b", ...).
        filename: the file (or folder, for Hugging Face format) name as published.
        url: where the publisher hosts it.
        fmt: "torch" (a pickled state dict, .pth/.pt) or "hf" (a folder with config.json and
            model.safetensors, the transformers format).
        sha256: hex digest of the file, or None when we do not know it for sure.
        size_bytes: exact size when known, or None.
    """

    model: str
    filename: str
    url: str
    fmt: str = "torch"
    sha256: str | None = None
    size_bytes: int | None = None

    def where(self) -> str:
        return f"{self.filename} from {self.url}"


_SAM = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2_HF = "https://huggingface.co/facebook/"

KNOWN_CHECKPOINTS: MappingProxyType[str, KnownCheckpoint] = MappingProxyType(
    {
        "sam_vit_b": KnownCheckpoint("sam_vit_b", "sam_vit_b_01ec64.pth", _SAM + "sam_vit_b_01ec64.pth"),
        "sam_vit_l": KnownCheckpoint("sam_vit_l", "sam_vit_l_0b3195.pth", _SAM + "sam_vit_l_0b3195.pth"),
        "sam_vit_h": KnownCheckpoint("sam_vit_h", "sam_vit_h_4b8939.pth", _SAM + "sam_vit_h_4b8939.pth"),
        "mobile_sam": KnownCheckpoint(
            "mobile_sam",
            "mobile_sam.pt",
            "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        ),
        "sam2.1_hiera_tiny": KnownCheckpoint(
            "sam2.1_hiera_tiny", "sam2.1-hiera-tiny/", _SAM2_HF + "sam2.1-hiera-tiny", fmt="hf"
        ),
        "sam2.1_hiera_small": KnownCheckpoint(
            "sam2.1_hiera_small", "sam2.1-hiera-small/", _SAM2_HF + "sam2.1-hiera-small", fmt="hf"
        ),
        "sam2.1_hiera_base_plus": KnownCheckpoint(
            "sam2.1_hiera_base_plus", "sam2.1-hiera-base-plus/", _SAM2_HF + "sam2.1-hiera-base-plus", fmt="hf"
        ),
        "sam2.1_hiera_large": KnownCheckpoint(
            "sam2.1_hiera_large", "sam2.1-hiera-large/", _SAM2_HF + "sam2.1-hiera-large", fmt="hf"
        ),
        "edgetam": KnownCheckpoint(
            "edgetam",
            "EdgeTAM/ (transformers format)",
            "https://huggingface.co/facebook/EdgeTAM (code and original edgetam.pt: "
            "https://github.com/facebookresearch/EdgeTAM)",
            fmt="hf",
        ),
    }
)


@dataclass(frozen=True)
class CheckpointFile:
    """A checked local checkpoint.

    Attributes:
        path: the file (torch format) or folder (transformers format).
        model: the registry name it was checked for.
        sha256: digest of the file (of model.safetensors for a folder); keys the ONNX export cache.
        size_bytes: file size.
        verified: True when the digest matched a known official digest.
    """

    path: Path
    model: str
    sha256: str
    size_bytes: int
    verified: bool


def known_checkpoint(model: str) -> KnownCheckpoint | None:
    return KNOWN_CHECKPOINTS.get(model)


def _where(model: str) -> str:
    known = known_checkpoint(model)
    return f"download {known.where()}" if known else "pass the checkpoint file of that model"


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """Streaming SHA-256 of a file (a 2.5 GB ViT-H file takes a few seconds, read once)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path | str | None, model: str, known: KnownCheckpoint | None = None) -> CheckpointFile:
    """Check that `path` exists and is the file `model` expects, before anything is unpickled.

    Args:
        path: the user's checkpoint path; for transformers-format models a folder.
        model: our registry name, used in the messages.
        known: the official file to compare with; defaults to the table entry for `model`.

    Raises:
        CheckpointError: missing, empty, or a digest that differs from the known official one.
    """
    known = known if known is not None else known_checkpoint(model)
    if path is None:
        raise CheckpointError(
            f"model {model!r} needs a checkpoint: {_where(model)} and pass --checkpoint PATH"
        )
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} not found: model {model!r} expects "
            f"{_where(model).removeprefix('download ')}; "
            "download it and pass --checkpoint PATH"
        )
    data_file = path
    if path.is_dir():
        data_file = path / "model.safetensors"
        if not data_file.is_file() or not (path / "config.json").is_file():
            raise CheckpointError(
                f"checkpoint folder {path} has no config.json + model.safetensors: model {model!r} expects "
                f"the transformers-format folder, {_where(model)}"
            )
    size = data_file.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {data_file} is empty (0 bytes): model {model!r}; {_where(model)}")
    if known is not None and known.size_bytes is not None and size != known.size_bytes:
        raise CheckpointError(
            f"checkpoint {data_file} has {size} bytes but the official {known.filename} has "
            f"{known.size_bytes}: truncated or another file; {_where(model)}"
        )
    digest = sha256_of(data_file)
    verified = False
    if known is not None and known.sha256 is not None:
        if digest != known.sha256:
            raise CheckpointError(
                f"checkpoint {data_file} has SHA-256 {digest[:12]}… but the official {known.filename} has "
                f"{known.sha256[:12]}…: corrupt, truncated or another model's file; {_where(model)}"
            )
        verified = True
    else:
        log.warning(
            "checkpoint %s (sha256 %s…) loaded unverified: no known official digest for model %r",
            data_file,
            digest[:12],
            model,
        )
    return CheckpointFile(path=path, model=model, sha256=digest, size_bytes=size, verified=verified)


def load_torch_state_dict(ckpt: CheckpointFile) -> dict[str, torch.Tensor]:
    """Unpickle a torch-format checkpoint safely (weights only) into a flat state dict.

    Accepts the plain state dicts that segment-anything and MobileSAM publish, and the common
    {"model": state_dict} wrapper.

    Raises:
        CheckpointError: the file is not a readable torch checkpoint (truncated download, HTML
            error page, random bytes) or holds no state dict.
    """
    try:
        obj = torch.load(ckpt.path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(
            f"checkpoint {ckpt.path} ({ckpt.size_bytes} bytes) is corrupt or truncated and cannot be read "
            f"as a torch checkpoint for model {ckpt.model!r} ({type(err).__name__}: {str(err)[:160]}); "
            f"{_where(ckpt.model)}"
        ) from err
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"checkpoint {ckpt.path} holds a {type(obj).__name__}, not a state dict of tensors, so it is not "
            f"a {ckpt.model!r} checkpoint; {_where(ckpt.model)}"
        )
    return obj


def match_state_dict(
    ckpt: CheckpointFile, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], hint: str = ""
) -> None:
    """Refuse a state dict whose keys or shapes differ from the model's, with a readable diff.

    Args:
        state: what the file holds.
        expected: the built model's `state_dict()`.
        hint: what the file looks like instead (e.g. "it looks like sam_vit_h"), when known.
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)}, "
            f"model {tuple(expected[k].shape)})"
        )
    hint = f"; {hint}" if hint else ""
    raise CheckpointError(
        f"checkpoint {ckpt.path} does not fit model {ckpt.model!r}: {', '.join(parts)}{hint}; "
        f"{_where(ckpt.model)}"
    )


_SAM_VIT_WIDTH = MappingProxyType({768: "sam_vit_b", 1024: "sam_vit_l", 1280: "sam_vit_h"})


def guess_model(state: dict[str, torch.Tensor]) -> str | None:
    """Which official model a torch state dict looks like, from a few signature keys (or None)."""
    patch = state.get("image_encoder.patch_embed.proj.weight")
    if patch is not None:
        return _SAM_VIT_WIDTH.get(int(patch.shape[0]))
    if "image_encoder.patch_embed.seq.0.c.weight" in state:
        return "mobile_sam"
    if any(k.startswith("image_encoder.trunk.") for k in state):
        return "an original SAM 2 .pt checkpoint (use the transformers-format folder)"
    return None


def mismatch_hint(state: dict[str, torch.Tensor], model: str) -> str:
    guess = guess_model(state)
    return f"it looks like {guess}" if guess and guess != model else ""
