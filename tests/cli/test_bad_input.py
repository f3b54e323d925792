"""Bad input through the CLI: one paragraph naming the culprit, exit status 2, no traceback."""

from __future__ import annotations

import shutil

from helpers import run_cli, tiny_args


def assert_clear_error(result, *needles):
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in message, (needle, message)


def test_corrupt_png_is_named(tmp_path, image_folder):
    bad = image_folder / "train" / "square" / "3.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    assert_clear_error(run_cli("fit", *tiny_args(image_folder, tmp_path)), str(bad))


def test_empty_class_folder_is_named(tmp_path, image_folder):
    empty = image_folder / "val" / "stripes"
    shutil.rmtree(empty)
    empty.mkdir()
    assert_clear_error(run_cli("fit", *tiny_args(image_folder, tmp_path)), "stripes")


def test_checkpoint_of_another_family(tmp_path, image_folder):
    args = tiny_args(image_folder, tmp_path)
    assert run_cli("fit", *args, "--trainer.max_epochs", "1", "--run.test_after_fit", "false").returncode == 0
    (run_dir,) = (tmp_path / "tiny").iterdir()
    ckpt = str(run_dir / "checkpoints" / "best.ckpt")
    result = run_cli("validate", *tiny_args(image_folder, tmp_path, backbone="convnext-test"), "--ckpt_path", ckpt)
    assert_clear_error(result, "'vit'", "'convnext'")


def test_truncated_checkpoint(tmp_path, image_folder):
    args = tiny_args(image_folder, tmp_path)
    assert run_cli("fit", *args, "--trainer.max_epochs", "1", "--run.test_after_fit", "false").returncode == 0
    (run_dir,) = (tmp_path / "tiny").iterdir()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    assert_clear_error(run_cli("validate", *args, "--ckpt_path", str(ckpt)), str(ckpt), "truncated")


def test_error_raised_while_the_cli_builds_the_data_is_still_one_paragraph(tmp_path, image_folder):
    """jsonargparse wraps exceptions from DataModule.__init__; the user still sees ours."""
    result = run_cli("fit", *tiny_args(image_folder, tmp_path), "--data.root", str(tmp_path / "missing"))
    assert_clear_error(result, str(tmp_path / "missing" / "train"))


def test_resume_from_a_checkpoint_cut_in_half_names_it_and_the_alternative(tmp_path, image_folder):
    args = [*tiny_args(image_folder, tmp_path), "--trainer.max_epochs", "1", "--run.test_after_fit", "false"]
    assert run_cli("fit", *args).returncode == 0
    (run_dir,) = (tmp_path / "tiny").iterdir()
    last, best = run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "best.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    damaged, best_bytes = last.read_bytes(), best.read_bytes()
    result = run_cli("fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert_clear_error(result, str(last), "truncated", str(best))
    assert last.read_bytes() == damaged and best.read_bytes() == best_bytes  # nothing changed or deleted
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_ckpt_last_in_a_run_folder_without_checkpoints(tmp_path, image_folder):
    run_dir = tmp_path / "fresh"
    result = run_cli("fit", *tiny_args(image_folder, tmp_path), "--run.dir", str(run_dir), "--ckpt_path", "last")
    assert_clear_error(result, str(run_dir), "last.ckpt", "drop --ckpt_path")
    assert not (run_dir / "checkpoints").exists()
