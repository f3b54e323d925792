"""Two CPU processes (gloo) report the same validation metrics as one process."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli, tiny_args


def val_metrics(run_dir):
    metrics = json.loads((run_dir / "results.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if k.startswith("val/")}


@pytest.mark.slow
def test_ddp_validation_equals_single_process(tmp_path, image_folder):
    args = tiny_args(image_folder, tmp_path)
    trained = run_cli("fit", *args, "--trainer.max_epochs", "1", "--run.test_after_fit", "false")
    assert trained.returncode == 0, trained.stderr[-3000:]
    (fit_dir,) = (tmp_path / "tiny").iterdir()
    ckpt = str(fit_dir / "checkpoints" / "best.ckpt")

    # 15 validation images over 2 ranks with batches of 4: uneven shards and a ragged last batch
    common = [*args, "--ckpt_path", ckpt, "--data.batch_size", "4"]
    single = run_cli("validate", *common, "--run.dir", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = run_cli("validate", *common, "--run.dir", str(tmp_path / "ddp"),
                  "--trainer.strategy", "ddp", "--trainer.devices", "2")
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    one, two = val_metrics(tmp_path / "single"), val_metrics(tmp_path / "ddp")
    # stdout is a pipe: progress lines instead of a bar, printed by global rank 0 only
    val_lines = [line for line in ddp.stdout.splitlines() if line.startswith("[val]")]
    assert len(val_lines) == 1 and f"val/acc={two['val/acc']:.4f}" in val_lines[0], ddp.stdout[-2000:]
    assert set(one) == {"val/loss", "val/acc", "val/f1", "val/top3_acc"}
    assert json.loads((tmp_path / "ddp" / "results.json").read_text())["world_size"] == 2
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key


@pytest.mark.slow
def test_ddp_fit_runs_and_writes_one_result(tmp_path, image_folder):
    result = run_cli("fit", *tiny_args(image_folder, tmp_path), "--trainer.max_epochs", "1",
                     "--trainer.strategy", "ddp", "--trainer.devices", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "tiny").iterdir()  # both ranks agreed on one run folder
    results = json.loads((run_dir / "results.json").read_text())
    assert results["world_size"] == 2 and "test/acc" in results["metrics"]
