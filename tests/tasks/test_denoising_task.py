"""DenoisingPretraining: the loss over target tokens, training on BART's infilling and T5's span
corruption through the CLI, and its checkpoint as Summarization's starting point."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from lit_tasks.commands import main
from lit_tasks.tasks import DenoisingPretraining, Summarization
from lit_tasks.zoo.base import shift_right

WORDS = "red green blue cyan black white pink grey gold teal".split()
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + [f"<extra_id_{i}>" for i in range(20)]


def write_tokenizer(folder) -> None:
    """Whole colour words, BART's roles and template, and 20 T5 sentinels."""
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(SPECIALS + WORDS)}, unk_token="<unk>"))
    backend.add_special_tokens(SPECIALS)
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    folder.mkdir()
    backend.save(str(folder / "tokenizer.json"))
    roles = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(roles))


def write_corpus(file, documents: int, seed: int) -> None:
    """Documents of 3 sentences (lines); each sentence counts up through the colours from a random one."""
    rng = random.Random(seed)
    docs = []
    for _ in range(documents):
        lines = []
        for _ in range(3):
            first = rng.randrange(len(WORDS))
            lines.append(" ".join(WORDS[(first + i) % len(WORDS)] for i in range(rng.randint(4, 7))))
        docs.append("\n".join(lines))
    file.write_text("\n\n".join(docs) + "\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("denoise")
    write_tokenizer(root / "words")
    write_corpus(root / "train.txt", 200, seed=0)
    write_corpus(root / "val.txt", 10, seed=1)
    return root


def args(corpus, run_dir, objective: str, *extra: str) -> list[str]:
    return [
        "--model", "lit_tasks.tasks.DenoisingPretraining",
        "--model.backbone", "bart-test" if objective == "bart" else "t5-test",
        "--model.lr", "0.003",
        "--data", "lit_tasks.data.denoising.DenoisingDataModule",
        "--data.objective", objective,
        "--data.train_file", str(corpus / "train.txt"),
        "--data.val_file", str(corpus / "val.txt"),
        "--data.tokenizer", str(corpus / "words"),
        "--data.max_length", "48",
        "--data.batch_size", "16",
        "--trainer.max_epochs", "6",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.dir", str(run_dir),
        "--run.loggers", "[csv]",
        *extra,
    ]


def metrics(run_dir) -> dict:
    return json.loads((run_dir / "results.json").read_text())["metrics"]


@pytest.mark.parametrize("objective", ["bart", "t5"])
def test_pretraining_learns_to_restore_the_text(objective, corpus, tmp_path):
    # Counting colours makes a noised span predictable from its neighbours: a model that reads the
    # source restores it far better than the untrained one.
    main(["fit", *args(corpus, tmp_path / "fit", objective)])
    main(["validate", *args(corpus, tmp_path / "untrained", objective)])
    trained, untrained = metrics(tmp_path / "fit"), metrics(tmp_path / "untrained")
    assert untrained["val/perplexity"] > 10
    assert trained["val/perplexity"] < 0.3 * untrained["val/perplexity"], (trained, untrained)
    assert json.loads((tmp_path / "fit" / "results.json").read_text())["best"]["monitor"] == "val/perplexity"


def test_loss_is_the_mean_cross_entropy_of_target_tokens():
    torch.manual_seed(0)
    task = DenoisingPretraining(backbone="t5-test").eval()
    task.log_loss = task.log_metrics = task.log = lambda *a, **k: None  # no trainer here
    batch = {"input_ids": torch.tensor([[5, 6, 98, 1], [7, 98, 1, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
             "labels": torch.tensor([[98, 9, 1], [98, 1, -100]])}
    loss = task.step(batch, "train")
    logits = task.net(batch["input_ids"], batch["attention_mask"], shift_right(batch["labels"], 0, 0))
    real = batch["labels"] != -100
    assert loss.item() == pytest.approx(F.cross_entropy(logits[real], batch["labels"][real]).item(), rel=1e-5)


def test_a_pretraining_checkpoint_starts_summarization_with_all_its_weights(tmp_path):
    pretrained = DenoisingPretraining(backbone="bart-test")
    with torch.no_grad():
        for p in pretrained.parameters():
            p.add_(torch.randn_like(p))  # weights no fresh model has
    checkpoint = {"state_dict": pretrained.state_dict()}
    pretrained.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "best.ckpt")
    task = Summarization(init_from=str(tmp_path / "best.ckpt"))
    ours, theirs = task.net.state_dict(), pretrained.net.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
