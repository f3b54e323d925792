"""Export round trip: train a few steps, export, load in transformers, same logits."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import run_cli, tiny_args

from lit_tasks.tasks import ImageClassification

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("backbone", ["vit-test", "convnext-test"])
def test_exported_folder_loads_in_transformers_with_same_logits(backbone, tmp_path, image_folder):
    args = tiny_args(image_folder, tmp_path, backbone=backbone)
    trained = run_cli("fit", *args, "--trainer.max_epochs", "1", "--run.test_after_fit", "false")
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run_dir,) = (tmp_path / "tiny").iterdir()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    out = tmp_path / "exported"
    exported = run_cli("export", "--ckpt_path", str(ckpt), "--out", str(out))
    assert exported.returncode == 0, exported.stderr[-3000:]

    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "circle", "1": "square", "2": "stripes"}
    preprocessor = json.loads((out / "preprocessor_config.json").read_text())
    assert preprocessor["size"] == {"height": 32, "width": 32}

    ours = ImageClassification.load_from_checkpoint(ckpt, map_location="cpu").eval()
    theirs = transformers.AutoModelForImageClassification.from_pretrained(out).eval()
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(pixel_values=pixels).logits, ours(pixels), atol=1e-5, rtol=0)


def test_export_of_a_damaged_checkpoint_is_clear(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    result = run_cli("export", "--ckpt_path", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and str(bad) in result.stderr and "Traceback" not in result.stderr
