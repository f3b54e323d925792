"""Summarization / Translation: the teacher-forced loss, training from scratch with a tokenizer the
data trains, generation and corpus scores at validation, predictions files, predict, errors."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from lit_tasks.commands import main
from lit_tasks.errors import ConfigError
from lit_tasks.metrics.rouge import rouge_scores
from lit_tasks.tasks import Summarization, Translation
from lit_tasks.tasks.seq2seq import IGNORE
from lit_tasks.zoo.base import shift_right

WORDS = "red green blue cyan black white pink grey gold teal".split()


def write_pairs(file, n: int, seed: int, targets: bool = True) -> None:
    """Sources of 5-9 colour words; the target ("summary") is the source's first three words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 9))]
        row = {"source": " ".join(words)}
        if targets:
            row["target"] = " ".join(words[:3])
        rows.append(row)
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_word_tokenizer(folder) -> None:
    """A BART-style tokenizer of whole colour words (ids 0-3 the specials): with 14 tokens a tiny
    model learns to copy in a few hundred steps; with a 300-token BPE it (and transformers' BART
    alike) stays at the marginal distribution for over a thousand."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(specials + WORDS)}, unk_token="<unk>"))
    backend.add_special_tokens(specials)
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    folder.mkdir()
    backend.save(str(folder / "tokenizer.json"))
    roles = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(roles))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    write_word_tokenizer(root / "words")
    write_pairs(root / "train.jsonl", 480, seed=0)
    write_pairs(root / "val.jsonl", 12, seed=1)
    write_pairs(root / "predict.jsonl", 3, seed=2, targets=False)
    return root


def s2s_args(corpus, run_dir, *extra: str, task: str = "Summarization", backbone: str = "bart-test") -> list[str]:
    return [
        "--model", f"lit_tasks.tasks.{task}",
        "--model.backbone", backbone,
        "--model.lr", "0.003",
        "--model.warmup_fraction", "0.05",
        "--model.generation", '{"max_new_tokens": 8}',
        "--data", "lit_tasks.data.seq2seq.Seq2SeqDataModule",
        "--data.train_file", str(corpus / "train.jsonl"),
        "--data.val_file", str(corpus / "val.jsonl"),
        "--data.tokenizer", str(corpus / "words"),
        "--data.cache_dir", str(corpus / "cache"),
        "--data.max_source_length", "32",
        "--data.max_target_length", "16",
        "--data.batch_size", "16",
        "--trainer.max_epochs", "12",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.dir", str(run_dir),
        "--run.loggers", "[csv]",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """One fit (12 epochs of a tiny BART on 480 pairs, 360 steps) shared by the tests below."""
    run_dir = tmp_path_factory.mktemp("run")
    main(["fit", *s2s_args(corpus, run_dir)])
    return run_dir


def test_shift_right_starts_the_decoder_and_reads_ignored_labels_as_padding():
    labels = torch.tensor([[5, 6, 7, 2], [8, 2, IGNORE, IGNORE]])
    assert shift_right(labels, 2, 1).tolist() == [[2, 5, 6, 7], [2, 8, 2, 1]]


def test_fit_learns_to_copy_the_lead_and_writes_predictions(trained, corpus, tmp_path):
    results = json.loads((trained / "results.json").read_text())
    assert results["best"]["monitor"] == "val/rougeL" and results["best"]["mode"] == "max"
    metrics = results["metrics"]
    rows = [json.loads(line) for line in (trained / "val_predictions.jsonl").read_text().splitlines()]
    targets = [json.loads(line)["target"] for line in (corpus / "val.jsonl").read_text().splitlines()]
    assert [r["target"] for r in rows] == targets  # every val row once, in data order
    assert [r["id"] for r in rows] == [f"{corpus / 'val.jsonl'}#{i}" for i in range(1, 13)]
    # The logged scores are the rouge-score package's on the written predictions.
    expected = rouge_scores([r["prediction"] for r in rows], targets)
    assert metrics["val/rougeL"] == pytest.approx(expected["rougeL"], abs=1e-4)
    main(["validate", *s2s_args(corpus, tmp_path / "untrained")])  # the same model, untrained
    untrained = json.loads((tmp_path / "untrained" / "results.json").read_text())["metrics"]
    assert untrained["val/rougeL"] < 30
    assert metrics["val/rougeL"] > 80 and metrics["val/rougeL"] > untrained["val/rougeL"] + 50
    assert metrics["val/loss"] < 0.5 * untrained["val/loss"]


def test_loss_is_the_mean_cross_entropy_of_real_target_tokens():
    torch.manual_seed(0)
    task = Summarization(backbone="bart-test", label_smoothing=0.0).eval()  # no dropout: forwards repeat
    task.log_loss = lambda stage, loss, weight: None  # no trainer here
    batch = {"input_ids": torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
             "labels": torch.tensor([[0, 9, 2], [0, 2, IGNORE]])}
    loss = task.step(batch, "train")
    logits = task.net(batch["input_ids"], batch["attention_mask"], shift_right(batch["labels"], 2, 1))
    real = batch["labels"] != IGNORE
    expected = F.cross_entropy(logits[real], batch["labels"][real])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    smoothed = Summarization(backbone="bart-test", label_smoothing=0.1).eval()
    smoothed.net.load_state_dict(task.net.state_dict())
    smoothed.log_loss = task.log_loss
    expected = F.cross_entropy(logits[real], batch["labels"][real], label_smoothing=0.1)
    assert smoothed.step(batch, "train").item() == pytest.approx(expected.item(), rel=1e-5)


def test_predict_writes_generated_texts(trained, corpus, tmp_path):
    main(["predict", *s2s_args(corpus, tmp_path / "predict", "--data.predict_file", str(corpus / "predict.jsonl")),
          "--ckpt_path", str(trained / "checkpoints" / "best.ckpt")])
    rows = [json.loads(line) for line in (tmp_path / "predict" / "predictions.jsonl").read_text().splitlines()]
    sources = [json.loads(line)["source"] for line in (corpus / "predict.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == sources
    assert sum(r["prediction"] == " ".join(s.split()[:3]) for r, s in zip(rows, sources)) >= 2


def test_translation_scores_bleu_and_chrf_with_t5(corpus, tmp_path):
    main(["fit", *s2s_args(corpus, tmp_path, "--trainer.max_epochs", "1", "--data.tokenizer", "null",
                           "--data.train_tokenizer_type", "unigram", "--data.train_tokenizer_vocab_size", "200",
                           task="Translation", backbone="t5-test")])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["best"]["monitor"] == "val/chrf"
    assert {"val/bleu", "val/chrf", "val/loss"} <= set(results["metrics"])


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="model.label_smoothing"):
        Summarization(backbone="bart-test", label_smoothing=1.0)
    with pytest.raises(ConfigError, match="model.generation"):
        Translation(backbone="bart-test", generation={"max_new_token": 3})


@pytest.mark.slow
def test_ddp_scores_and_predictions_equal_single_process(corpus, trained, tmp_path):
    """2 gloo processes, 12 val rows in batches of 5 (ranks hold 6 and 6 rows, in 2 batches of
    uneven size): the corpus-level ROUGE over every row and the predictions file equal one process."""
    from helpers import validate_single_and_ddp

    args = [*s2s_args(corpus, tmp_path), "--ckpt_path", str(trained / "checkpoints" / "best.ckpt"),
            "--data.eval_batch_size", "5"]
    args.remove("--run.dir")
    args.remove(str(tmp_path))
    one, two = validate_single_and_ddp(args, tmp_path)
    for key in ("val/rouge1", "val/rouge2", "val/rougeL", "val/rougeLsum", "val/loss"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-5), key
    single = (tmp_path / "single" / "val_predictions.jsonl").read_text()
    assert (tmp_path / "ddp" / "val_predictions.jsonl").read_text() == single
    assert len(single.splitlines()) == 12
