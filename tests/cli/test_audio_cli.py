"""Audio classification and speech recognition end to end through the CLI, and the bad inputs
of issue 5's acceptance list (tiny wav2vec2-test models on tiny generated audio)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
from helpers import (AUDIO_CLASSES, make_audio_folder, make_transcribed_audio, run_cli, tiny_audio_args,
                     validate_single_and_ddp)

from lit_tasks.commands import main


def _results(runs: Path) -> tuple[Path, dict]:
    (run_dir,) = (runs / "tiny").iterdir()
    return run_dir, json.loads((run_dir / "results.json").read_text())


def _predictions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_audio_classification_fit_then_predict(tmp_path):
    data = make_audio_folder(tmp_path / "audio", {"train": 4, "val": 2, "test": 2})
    t = np.arange(44100) / 44100  # 1 s stereo 44.1 kHz: mixed down and resampled, then dropped as too long
    sf.write(data / "train" / "mid" / "stereo_44k.wav", np.stack([np.sin(2 * np.pi * 900 * t)] * 2, -1) * 0.5, 44100)
    t = np.arange(int(0.3 * 44100)) / 44100  # 0.3 s stereo 44.1 kHz: kept
    sf.write(data / "train" / "low" / "stereo_short.wav", np.stack([np.sin(2 * np.pi * 300 * t)] * 2, -1) * 0.5, 44100)
    args = tiny_audio_args(data, tmp_path / "runs", "classification")
    fit = run_cli("fit", *args, "--trainer.max_epochs", "1", "--data.max_duration", "0.5")
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "1 clip(s) longer than max_duration=0.5 s dropped" in fit.stderr and "stereo_44k.wav" in fit.stderr
    run_dir, results = _results(tmp_path / "runs")
    for key in ("val/acc", "val/f1", "val/loss", "test/acc", "test/f1", "train/loss_epoch"):
        assert key in results["metrics"], key
    assert results["best"]["monitor"] == "val/acc"
    assert results["config"]["model"]["init_args"]["label_names"] == list(AUDIO_CLASSES)
    predicted = run_cli("predict", *args, "--ckpt_path", "best")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    rows = _predictions(run_dir)
    assert len(rows) == 6 and {r["label"] for r in rows} <= set(AUDIO_CLASSES)
    assert sorted(Path(r["path"]).parent.name for r in rows) == sorted(r["true_label"] for r in rows)
    assert all(0 <= r["score"] <= 1 and r["score"] == r["top"][0][1] for r in rows)


@pytest.mark.slow
def test_speech_recognition_fit_predict_and_audio_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    data = make_transcribed_audio(tmp_path / "asr", {"train": 8, "val": 4, "test": 4})
    args = [a if a != "[csv]" else "[wandb, csv]" for a in tiny_audio_args(data, tmp_path / "runs", "transcription")]
    fit = run_cli("fit", *args, "--trainer.max_epochs", "1", "--model.log_samples", "2")
    assert fit.returncode == 0, fit.stderr[-3000:]
    run_dir, results = _results(tmp_path / "runs")
    for key in ("val/wer", "val/cer", "val/loss", "test/wer", "test/cer", "train/loss_epoch"):
        assert key in results["metrics"], key
    assert results["best"]["monitor"] == "val/wer"
    # predict (greedy, the test split, best checkpoint): jiwer over its rows gives fit's test WER/CER
    main(["predict", *args, "--run.loggers", "[csv]", "--ckpt_path", results["checkpoints"]["best"]])
    rows = _predictions(run_dir)
    references = {Path(r["path"]).name: r["text"] for r in map(json.loads, (data / "test.jsonl").read_text().splitlines())}
    assert sorted(Path(r["path"]).name for r in rows) == sorted(references)
    refs, hyps = [references[Path(r["path"]).name] for r in rows], [r["text"] for r in rows]
    assert [r["reference"] for r in rows] == refs  # transcripts of lower-case "abc" words: normalised as given
    assert jiwer.wer(refs, hyps) == pytest.approx(results["metrics"]["test/wer"], abs=1e-6)
    assert jiwer.cer(refs, hyps) == pytest.approx(results["metrics"]["test/cer"], abs=1e-6)
    # `score` on the rows gives fit's test WER and CER exactly: the training's own metric code (docs/scoring.md)
    scored = tmp_path / "scores.json"
    main(["score", "--metric", "wer_cer", "--predictions", str(run_dir / "predictions.jsonl"), "--out", str(scored)])
    assert json.loads(scored.read_text()) == {"wer": results["metrics"]["test/wer"], "cer": results["metrics"]["test/cer"]}
    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    tables = {p.parent.name: json.loads(p.read_text()) for p in wandb_run.rglob("media/table/**/samples_*.json")}
    assert set(tables) == {"val", "test"}
    for table in tables.values():
        assert table["columns"] == ["path", "audio", "reference", "prediction"] and len(table["data"]) == 2
        assert all(Path(path).name.startswith(("val_", "test_")) and set(ref) <= set("abc ")
                   for path, _, ref, _ in table["data"])
    # offline, the audio files travel in the table's run_table artifact, recorded in the .wandb log
    (log,) = wandb_run.glob("*.wandb")
    assert b"run_table" in log.read_bytes() and re.search(rb"media/audio/\w+\.wav", log.read_bytes())
    # predict from the checkpoint alone: no training data, no vocab.json
    (data / "predict.csv").write_text("path\n" + "".join(f"clips/test_{i}.flac\n" for i in range(4)))
    ckpt = results["checkpoints"]["best"]
    predicted = run_cli("predict", "--model", "lit_tasks.tasks.SpeechRecognition", "--model.backbone", "wav2vec2-test",
                        "--model.decoder", "beam", "--model.beam_width", "4",
                        "--data", "lit_tasks.data.AudioDataModule", "--data.task", "transcription",
                        "--data.predict_file", str(data / "predict.csv"), "--data.num_workers", "0",
                        "--run.root", str(tmp_path / "runs"), "--run.name", "predict", "--run.loggers", "[csv]",
                        "--ckpt_path", ckpt)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    rows = _predictions(run_dir)  # a checkpoint of a run folder writes into that folder
    assert [Path(r["path"]).name for r in rows] == [f"test_{i}.flac" for i in range(4)]
    assert all(isinstance(r["text"], str) and set(r["text"]) <= set("abc ") and "reference" not in r for r in rows)


def _bad(kind: str, root: Path) -> tuple[list[str], str]:
    """Arguments of a run over data with one bad file, and what the error must say."""
    if kind == "oov":
        data = make_transcribed_audio(root, {"train": 4, "val": 2})
        rows = (data / "val.jsonl").read_text().splitlines()
        rows[1] = rows[1].replace('"text": "', '"text": "x')
        (data / "val.jsonl").write_text("\n".join(rows) + "\n")
        args = [a for a in tiny_audio_args(data, root / "runs", "transcription") if "test.jsonl" not in a]
        args.remove("--data.test_file")
        return args, r"val\.jsonl line 2 \(.*val_1\.flac\): the transcript '.*' has character\(s\) \['x'\] outside"
    data = make_audio_folder(root, {"train": 2, "val": 1})
    bad = data / "val" / "low" / "bad.wav"
    args = tiny_audio_args(data, root / "runs", "classification")
    if kind == "truncated":
        good = (data / "val" / "low" / "0.wav").read_bytes()
        bad.write_bytes(good[: len(good) // 2])
        return args, r"bad\.wav: the audio file is truncated"
    if kind == "empty":
        sf.write(bad, np.zeros(0), 16000)
        return args, r"bad\.wav: the audio file holds no samples"
    sf.write(bad, np.zeros(16000), 16000)  # 1 s, longer than max_duration
    return [*args, "--data.max_duration", "0.5", "--data.long_clips", "error"], \
        r"bad\.wav: the clip lasts 1\.00 s, longer than max_duration=0\.5 s"


@pytest.mark.parametrize("kind", ["truncated", "empty", "too_long", "oov"])
def test_bad_audio_input_is_one_paragraph_naming_the_file(kind, tmp_path, capsys):
    args, says = _bad(kind, tmp_path / kind)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(says, err), err


@pytest.mark.slow
@pytest.mark.parametrize(("recipe", "metric"), [("audio_classification/wav2vec2_spoken_digits.yaml", "val/acc"),
                                                ("speech_recognition/wav2vec2_ctc_digit_strings.yaml", "val/wer")])
def test_audio_recipes_run_a_few_steps_on_the_bundled_data(recipe, metric, tmp_path):
    result = run_cli("fit", "--config", f"configs/{recipe}", "--trainer.max_epochs", "1",
                     "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                     "--trainer.limit_test_batches", "1", "--trainer.check_val_every_n_epoch", "1",
                     "--data.num_workers", "0", "--run.root", str(tmp_path), "--run.name", "tiny", "--run.loggers", "[csv]")
    assert result.returncode == 0, result.stderr[-3000:]
    _, results = _results(tmp_path)
    assert metric in results["metrics"] and metric.replace("val/", "test/") in results["metrics"]


@pytest.mark.slow
def test_ddp_wer_and_cer_equal_single_process(tmp_path):
    """Two gloo processes sum edit distances and reference lengths: the same rates as one process."""
    data = make_transcribed_audio(tmp_path / "asr", {"train": 8, "val": 5})  # 5 clips: uneven shards
    args = [a for a in tiny_audio_args(data, tmp_path / "runs", "transcription") if "test.jsonl" not in a]
    args.remove("--data.test_file")
    args += ["--model.backbone_config", "{feat_extract_norm: layer, conv_bias: true}"]  # padding-independent
    trained = run_cli("fit", *args, "--trainer.max_epochs", "1")
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_dir, _ = _results(tmp_path / "runs")
    common = [*args, "--ckpt_path", str(run_dir / "checkpoints" / "best.ckpt"), "--data.batch_size", "2"]
    one, two = validate_single_and_ddp(common, tmp_path)
    for key in ("val/wer", "val/cer"):  # integer sums: exact but for the division
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], abs=1e-6), key
    # float32 losses (~100 for an untrained head) summed in another order: equal to float32 precision
    assert two["metrics"]["val/loss"] == pytest.approx(one["metrics"]["val/loss"], rel=1e-6)
