"""`xrseg models list | check | export` on a random-weights MobileSAM file in the official format."""

from __future__ import annotations

import onnx
import pytest
import torch
from typer.testing import CliRunner

from models.cli import models_app
from models.mobile_sam.build import build_mobile_sam_architecture

runner = CliRunner()


@pytest.fixture(scope="module")
def mobile_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "mobile_sam.pt"
    torch.save(build_mobile_sam_architecture().state_dict(), path)
    return path


def test_list_names_files_and_sources():
    result = runner.invoke(models_app, ["list"])
    assert result.exit_code == 0
    assert "mobile_sam" in result.output and "sam_vit_h_4b8939.pth" in result.output
    assert "facebook/sam2.1-hiera-tiny" in result.output and "geometric" in result.output


def test_check_identifies_the_model(mobile_file, tmp_path, monkeypatch):
    monkeypatch.setenv("XRSEG_CACHE", str(tmp_path))
    result = runner.invoke(models_app, ["check", str(mobile_file)])
    assert result.exit_code == 0, result.output
    assert "is a mobile_sam checkpoint" in result.output and "unverified" in result.output


def test_check_fails_clearly_on_a_truncated_file(mobile_file, tmp_path):
    cut = tmp_path / "mobile_sam.pt"
    cut.write_bytes(mobile_file.read_bytes()[:4096])
    result = runner.invoke(models_app, ["check", str(cut), "--model", "mobile_sam"])
    assert result.exit_code == 2 and "corrupt or truncated" in result.output


def test_export_writes_loadable_graphs(mobile_file, tmp_path):
    result = runner.invoke(
        models_app, ["export", "mobile_sam", "--checkpoint", str(mobile_file), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("*.onnx"))
    assert len(files) == 3
    for f in files:
        onnx.checker.check_model(str(f))
