"""Masked-LM pretraining from the command line: a tiny BERT from scratch with a tokenizer
trained on the corpus, compared with the same model untrained."""

from __future__ import annotations

import json

import pytest
from helpers import mlm_args, run_cli, write_corpus

from lit_tasks.commands import main
from lit_tasks.text import load_tokenizer


@pytest.fixture()
def corpus(tmp_path):
    write_corpus(tmp_path / "corpus" / "train.txt", 150, seed=0)
    write_corpus(tmp_path / "corpus" / "val.txt", 25, seed=1)
    return tmp_path / "corpus"


def results(runs, command_dir=None) -> dict:
    (run_dir,) = [d for d in (runs / "mlm").iterdir() if command_dir is None or d.name == command_dir]
    return json.loads((run_dir / "results.json").read_text())


def test_pretraining_from_scratch_beats_the_untrained_model(tmp_path, corpus):
    runs = tmp_path / "runs"
    fitted = run_cli("fit", *mlm_args(corpus, runs, "--data.nsp", "true", "--data.whole_word_mask", "true"))
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    r = results(runs)
    for key in ("val/perplexity", "val/mlm_acc", "val/nsp_acc", "val/loss", "train/loss"):
        assert key in r["metrics"], key
    assert r["best"]["monitor"] == "val/perplexity" and r["best"]["mode"] == "min"
    (tokenizer,) = (runs / "cache").glob("tokenizer-*")
    vocab = load_tokenizer(tokenizer).vocab_size
    model_args = r["config"]["model"]["init_args"]
    assert model_args["vocab_size"] == vocab and model_args["nsp"] is True
    # the same model, untrained: `validate` without a checkpoint, in its own run folder
    untrained = run_cli("validate", *mlm_args(corpus, runs, "--data.nsp", "true", "--run.dir", str(runs / "untrained")))
    assert untrained.returncode == 0, untrained.stderr[-3000:]
    before = json.loads((runs / "untrained" / "results.json").read_text())["metrics"]["val/perplexity"]
    assert before > 0.5 * vocab  # an untrained model is about as good as guessing among all tokens
    assert r["best"]["score"] < 0.5 * before


def test_tokenizer_and_training_one_at_a_time(tmp_path, corpus, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *mlm_args(corpus, tmp_path), "--data.tokenizer", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "data.tokenizer" in err and "train_tokenizer_vocab_size" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_ddp_validation_equals_single_process(tmp_path, corpus):
    """Perplexity and accuracy pool sums over ranks: 2 gloo processes give the one-process numbers."""
    runs = tmp_path / "runs"
    args = mlm_args(corpus, runs, "--data.nsp", "true", "--data.batch_size", "5")
    trained = run_cli("fit", *args, "--trainer.max_epochs", "1")
    assert trained.returncode == 0, trained.stderr[-3000:]
    (fit_dir,) = (runs / "mlm").iterdir()
    common = [*args, "--ckpt_path", str(fit_dir / "checkpoints" / "best.ckpt")]
    single = run_cli("validate", *common, "--run.dir", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = run_cli("validate", *common, "--run.dir", str(tmp_path / "ddp"),
                  "--trainer.strategy", "ddp", "--trainer.devices", "2")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = (json.loads((tmp_path / d / "results.json").read_text())["metrics"] for d in ("single", "ddp"))
    for key in ("val/perplexity", "val/mlm_acc", "val/nsp_acc"):
        assert two[key] == pytest.approx(one[key], rel=1e-5), key
