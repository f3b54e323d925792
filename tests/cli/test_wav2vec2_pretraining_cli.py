"""wav2vec2 contrastive pretraining end to end through the CLI (tiny wav2vec2-test models on
tiny generated audio), its recipe on the bundled speech, and a bad manifest row."""

from __future__ import annotations

import csv
import json
import re
import signal
from pathlib import Path

import pytest
import torch
from helpers import REPO, make_audio_folder, run_cli, validate_single_and_ddp

from lit_tasks.commands import main

METRICS = ("loss", "contrastive_loss", "diversity_loss", "contrastive_acc", "codebook_perplexity")


def _args(runs: Path, *data: str) -> list[str]:
    return [
        "--model", "lit_tasks.tasks.Wav2Vec2Pretraining",
        "--model.backbone", "wav2vec2-test",
        "--model.backbone_config", "{feat_extract_norm: layer, conv_bias: true, layerdrop: 0.0}",
        "--model.mask_length", "4",
        "--model.lr", "0.003",
        "--data", "lit_tasks.data.AudioDataModule", "--data.task", "unlabelled", *data,
        "--data.batch_size", "4",
        "--data.num_workers", "0",
        "--trainer.max_epochs", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(runs),
        "--run.name", "tiny",
        "--run.loggers", "[csv]",
    ]


@pytest.mark.slow
def test_pretraining_fit_then_validate_from_the_checkpoint(tmp_path):
    data = make_audio_folder(tmp_path / "audio", {"train": 4, "val": 2, "test": 2})  # class folders, ignored
    args = _args(tmp_path / "runs", "--data.root", str(data))
    fit = run_cli("fit", *args)
    assert fit.returncode == 0, fit.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "tiny").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    metrics = results["metrics"]
    for stage in ("val", "test"):
        for name in METRICS:
            assert f"{stage}/{name}" in metrics, f"{stage}/{name}"
    for name in (*METRICS, "gumbel_temperature"):
        assert f"train/{name}_epoch" in metrics, name
    assert results["best"]["monitor"] == "val/loss"
    groups_times_codes = 2 * 16  # the wav2vec2-test preset's codebook
    assert 1 < metrics["val/codebook_perplexity"] <= groups_times_codes
    assert 0 <= metrics["val/contrastive_acc"] <= 1
    assert metrics["train/gumbel_temperature_epoch"] < 2.0  # it decays with the optimizer steps
    validated = run_cli("validate", *args, "--ckpt_path", results["checkpoints"]["best"],
                        "--run.dir", str(tmp_path / "validate"))
    assert validated.returncode == 0, validated.stderr[-3000:]
    again = json.loads((tmp_path / "validate" / "results.json").read_text())["metrics"]
    best_epoch = results["best"]["metrics"]
    assert again["val/loss"] == pytest.approx(best_epoch["val/loss"], rel=1e-4)  # val masks are fixed

    import transformers

    from lit_tasks.export import export_checkpoint
    from lit_tasks.tasks import Wav2Vec2Pretraining

    out = export_checkpoint(results["checkpoints"]["best"], tmp_path / "exported")
    theirs = transformers.Wav2Vec2ForPreTraining.from_pretrained(out).eval()
    ours = Wav2Vec2Pretraining.load_from_checkpoint(results["checkpoints"]["best"], map_location="cpu").net.eval()
    audio = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = theirs(audio), ours(audio)
    torch.testing.assert_close(a.projected_states, b.projected_states, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.projected_quantized_states, b.projected_quantized_states, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_recipe_runs_a_few_steps_on_the_bundled_speech(tmp_path):
    result = run_cli("fit", "--config", "configs/wav2vec2_pretraining/wav2vec2_small_digits.yaml",
                     "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                     "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
                     "--data.num_workers", "0", "--run.root", str(tmp_path), "--run.name", "tiny",
                     "--run.loggers", "[csv]")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "tiny").iterdir()
    metrics = json.loads((run_dir / "results.json").read_text())["metrics"]
    assert "val/loss" in metrics and "test/codebook_perplexity" in metrics


def test_missing_audio_path_is_one_paragraph_naming_file_and_row(tmp_path, capsys):
    data = make_audio_folder(tmp_path / "audio", {"train": 1})
    manifest = tmp_path / "train.csv"
    manifest.write_text("path,label\naudio/train/low/0.wav,x\n,y\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *_args(tmp_path / "runs", "--data.train_file", str(manifest))])
    assert exit_info.value.code == 2 and data.is_dir()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(r"train\.csv row 2: the 'path' field is empty", err), err


@pytest.mark.slow
def test_ddp_validation_metrics_equal_single_process(tmp_path):
    """Val masks depend on the clip only and every metric sums over masked frames before dividing:
    two gloo processes (uneven shards, other batches) give the single process's numbers."""
    data = make_audio_folder(tmp_path / "audio", {"train": 2, "val": 3})  # 9 val clips
    args = _args(tmp_path / "runs", "--data.root", str(data))
    trained = run_cli("fit", *args, "--trainer.max_epochs", "1")
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "tiny").iterdir()
    common = [*args, "--ckpt_path", str(run_dir / "checkpoints" / "best.ckpt"), "--data.batch_size", "2"]
    one, two = validate_single_and_ddp(common, tmp_path)
    for name in METRICS:
        assert two["metrics"][f"val/{name}"] == pytest.approx(one["metrics"][f"val/{name}"], rel=1e-5), name


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    """Masks, distractors and the Gumbel temperature follow the optimizer step, Gumbel noise and
    dropout the checkpointed RNG: a resumed run logs the same step losses and ends with the same
    weights, bit for bit."""
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))
    data = make_audio_folder(tmp_path / "audio", {"train": 4, "val": 1})  # 12 clips: 3 steps per epoch
    common = [*_args(tmp_path / "runs", "--data.root", str(data)), "--run.test_after_fit", "false",
              "--trainer.log_every_n_steps", "1", "--run.checkpoint_every_n_steps", "2",
              "--model.backbone_config", "{feat_extract_norm: layer, conv_bias: true, hidden_dropout: 0.2}"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = run_cli("fit", *common, "--run.dir", str(whole))
    assert done.returncode == 0, done.stderr[-3000:]
    killed = run_cli("fit", *common, "--run.dir", str(broken), "--trainer.callbacks", "helpers.SigkillAtStep",
                     "--trainer.callbacks.step", "4")  # the second batch of epoch 1
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = run_cli("fit", *common, "--run.dir", str(broken), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def steps(run_dir):
        with open(run_dir / "logs" / "metrics.csv", newline="") as f:
            return [(r["step"], r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]

    assert steps(broken) == steps(whole) and len(steps(whole)) == 6
    one, two = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in (whole, broken))
    assert all(torch.equal(one[k], two[k]) for k in one), [k for k in one if not torch.equal(one[k], two[k])]
