"""The command line: help, config errors, every recipe loads, run folder contents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from helpers import REPO, run_cli, tiny_args

from lit_tasks.cli import LitTasksCLI
from lit_tasks.commands import main

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def test_wrong_model_key_is_one_short_error(tmp_path, capsys, image_folder):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *tiny_args(image_folder, tmp_path), "--model.lrr", "0.1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "lrr" in err and "model" in err
    assert len(err.strip().splitlines()) <= 3


def test_wrong_key_in_config_file_names_it(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text((REPO / "configs/image_classification/convnext_fashion_mnist.yaml").read_text()
                      .replace("max_epochs:", "max_epochz:"))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "max_epochz" in err and len(err.strip().splitlines()) <= 3


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO)) for c in CONFIGS])
def test_every_recipe_instantiates(config, tmp_path, monkeypatch):
    """Each configs/ file parses against the real signatures and builds model, data and trainer; one
    whose header says `init_from: <recipe>` does so from an (untrained) checkpoint of that recipe."""
    monkeypatch.chdir(REPO)
    text = config.read_text()
    assert "command:" in text and "expected:" in text, "a recipe states its command and expected metric"
    args = ["--config", str(config), "--run.root", str(tmp_path), "--run.loggers", "[csv]"]
    parent = re.search(r"^#\s*init_from:\s*(\S+)", text, re.M)
    if parent:
        pre = LitTasksCLI(args=["--config", str(REPO / "configs" / parent[1]), "--run.root", str(tmp_path / "pre"),
                                "--run.loggers", "[csv]"], run=False)
        checkpoint = {"state_dict": pre.model.state_dict()}
        pre.model.on_save_checkpoint(checkpoint)
        torch.save(checkpoint, tmp_path / "pre.ckpt")
        args += ["--model.init_from", str(tmp_path / "pre.ckpt"), "--data.tokenizer", pre.datamodule.tokenizer.source]
    cli = LitTasksCLI(args=args, run=False)
    if getattr(cli.datamodule, "num_classes", 0):  # label tasks: the data's classes reach the model
        assert cli.model.hparams.num_classes == cli.datamodule.num_classes
        assert list(cli.model.label_names) == list(cli.datamodule.label_names)
    if "vocab_size" in cli.model.hparams:  # pretraining: the tokenizer sizes the embedding
        assert cli.model.hparams.vocab_size == cli.datamodule.vocab_size
    assert cli.trainer.max_epochs >= 1


def test_fit_leaves_a_complete_run_folder(tmp_path, image_folder):
    result = run_cli("fit", *tiny_args(image_folder, tmp_path), "--run.progress_every_n_steps", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "tiny").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    check_progress_lines(result.stdout, results)
    assert results["status"] == "finished"
    assert results["commands"] == ["fit", "test"]
    for key in ("val/acc", "val/f1", "val/top3_acc", "test/acc", "test/f1", "train/loss"):
        assert key in results["metrics"], key
    assert results["best"]["monitor"] == "val/acc"
    assert Path(results["checkpoints"]["best"]).is_file() and Path(results["checkpoints"]["last"]).is_file()
    assert results["config"]["model"]["init_args"]["num_classes"] == 3
    assert results["seed"] == 42 and results["versions"]["torch"]
    assert results["recipe"] == []  # no --config file: everything came from the command line
    assert results["throughput"]["train_samples_per_s"] > 0 and results["wall_time_s"]["fit"] > 0
    assert len(results["history"]) == 2
    for name in ("config.yaml", "curves.png", "confusion_matrix.png", "test_confusion_matrix.png", "logs/metrics.csv"):
        assert (run_dir / name).is_file(), name


def check_progress_lines(stdout: str, results: dict) -> None:
    """stdout is a pipe, as under sbatch: plain lines (2 epochs of 3 steps, a line every 2 steps), no bar."""
    assert "\r" not in stdout
    train = [line for line in stdout.splitlines() if line.startswith("[train] epoch")]
    steps = [int(re.search(r"step (\d+)/6 ", line).group(1)) for line in train]
    assert steps == [2, 4, 6], stdout
    for line in train:
        assert re.search(r"epoch [12]/2  step \d/6  loss \d+\.\d{4}  [\d.]+ samples/s  elapsed \d+s  eta \d+s$", line), line
    val = [line for line in stdout.splitlines() if line.startswith("[val]")]
    assert len(val) == 2 and val[0].startswith("[val]   epoch 1/2  step 3/6  val/acc=")
    last_epoch = results["history"][-1]
    assert f"val/acc={last_epoch['val/acc']:.4f}" in val[1] and f"val/loss={last_epoch['val/loss']:.4f}" in val[1]
    assert "[train] done: 2 epochs, 6 steps in " in stdout
    (test,) = [line for line in stdout.splitlines() if line.startswith("[test]")]
    assert f"test/acc={results['metrics']['test/acc']:.4f}" in test


def test_validate_best_and_resume_last(tmp_path, image_folder):
    args = tiny_args(image_folder, tmp_path)
    assert run_cli("fit", *args, "--trainer.max_epochs", "1").returncode == 0
    (run_dir,) = (tmp_path / "tiny").iterdir()
    # the run's saved config is a complete recipe: validate from it alone
    validated = run_cli("validate", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "best")
    assert validated.returncode == 0, validated.stderr[-3000:]
    validate_dir = Path(re.search(r"run folder: (.+)", validated.stdout).group(1))
    assert json.loads((validate_dir / "results.json").read_text())["recipe"] == [str(run_dir / "config.yaml")]
    resumed = run_cli("fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [d.name for d in (tmp_path / "tiny").iterdir()] == [run_dir.name]  # resumed in the same folder
    results = json.loads((run_dir / "results.json").read_text())
    assert [row["epoch"] for row in results["history"]] == [0, 1]
    assert results["commands"] == ["fit", "test", "validate", "fit", "test"]


def test_last_checkpoint_is_newest_even_when_best_does_not_improve(tmp_path, image_folder):
    """lr 0: val/acc is the same every epoch, so best.ckpt stays at epoch 0; last.ckpt must still
    hold the final state, or `--ckpt_path last` would resume from an old one."""
    result = run_cli("fit", *tiny_args(image_folder, tmp_path), "--model.lr", "0", "--trainer.max_epochs", "3",
                     "--run.test_after_fit", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "tiny").iterdir()
    best = torch.load(run_dir / "checkpoints/best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] == 0
    assert last["epoch"] == 2 and last["global_step"] > best["global_step"]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["checkpoints"]["last"] == str(run_dir / "checkpoints/last.ckpt")


def test_ckpt_last_without_checkpoint_is_clear(tmp_path, image_folder):
    result = run_cli("fit", *tiny_args(image_folder, tmp_path), "--ckpt_path", "last")
    assert result.returncode == 2
    assert "no run under" in result.stderr and "last.ckpt" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_writes_label_names(tmp_path, image_folder):
    args = tiny_args(image_folder, tmp_path)
    assert run_cli("fit", *args, "--trainer.max_epochs", "1").returncode == 0
    result = run_cli("predict", *args, "--ckpt_path", "best")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "tiny").iterdir()
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12  # the test split: 4 images x 3 classes
    assert {row["label"] for row in rows} <= {"circle", "square", "stripes"}
    assert all(row["path"].endswith(".png") and 0 <= row["score"] <= 1 for row in rows)


def test_wandb_offline_run_gets_media(tmp_path, image_folder, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = [a if a != "[csv]" else "[wandb, csv]" for a in tiny_args(image_folder, tmp_path)]
    result = run_cli("fit", *args, "--trainer.max_epochs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "tiny").iterdir()
    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    images = {p.name.split("_")[0] for p in wandb_run.rglob("media/images/**/*.png")}
    assert {"confusion", "predictions"} <= images, images
    assert (run_dir / "wandb_run_id").read_text().strip() in wandb_run.name


def test_equals_form_overrides(tmp_path, image_folder):
    cli = LitTasksCLI(args=[*tiny_args(image_folder, tmp_path), "--model.lr=3e-4", "--data.batch_size=5",
                            "--trainer.max_epochs=3"], run=False)
    assert cli.model.lr == 3e-4 and cli.datamodule.batch_size == 5 and cli.trainer.max_epochs == 3


def test_fine_tune_from_hf_folder_uses_its_preprocessor_and_new_head(tmp_path, image_folder):
    from lit_tasks import zoo

    folder = tmp_path / "pretrained"
    zoo.save_pretrained(zoo.build("vit-test", "classification", num_labels=7), folder,
                        preprocessor={"image_mean": [0.1, 0.2, 0.3], "image_std": [0.5, 0.5, 0.5]})
    result = run_cli("fit", *tiny_args(image_folder, tmp_path), "--model.init_from", str(folder),
                     "--trainer.max_epochs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "classifier has num_labels=7, the model's num_labels=3" in result.stderr
    (run_dir,) = (tmp_path / "tiny").iterdir()
    config = json.loads((run_dir / "results.json").read_text())["config"]
    assert config["data"]["init_args"]["preprocessor"] == str(folder)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["lit_tasks"]["preprocessor"]["image_mean"] == [0.1, 0.2, 0.3]


def test_skipped_images_are_counted_in_results(tmp_path, image_folder):
    bad = image_folder / "train" / "circle" / "2.png"
    bad.write_bytes(b"not a png")
    result = run_cli("fit", *tiny_args(image_folder, tmp_path), "--data.skip_bad_images", "true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(bad) in result.stderr  # logged
    (run_dir,) = (tmp_path / "tiny").iterdir()
    skipped = json.loads((run_dir / "results.json").read_text())["skipped_samples"]
    assert skipped == {"count": 1, "paths": [str(bad)]}  # two epochs meet it twice; one file
