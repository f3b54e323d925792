"""Causal language modelling: the shifted loss, perplexity, training from scratch with a BPE the
data trains, samples after validation, predict, `python -m lit_tasks generate` and its errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from lit_tasks.commands import main
from lit_tasks.data.causal_lm import CausalLMDataModule
from lit_tasks.errors import ConfigError
from lit_tasks.tasks import CausalLanguageModeling

WORDS = "one two three four five six seven eight nine ten".split()


def write_counting(file, documents: int, start: int = 0) -> None:
    """Documents counting up from a word: the next word follows from the one before."""
    rows = []
    for d in range(start, start + documents):
        first = d % len(WORDS)
        rows.append({"text": " ".join(WORDS[(first + i) % len(WORDS)] for i in range(12 + d % 5))})
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("counting")
    write_counting(root / "train.jsonl", 160)
    write_counting(root / "val.jsonl", 10, start=3)
    (root / "prompts.txt").write_text("three four five\nnine ten\n")
    return root


def clm_args(corpus, run_dir, *extra: str) -> list[str]:
    return [
        "--model", "lit_tasks.tasks.CausalLanguageModeling",
        "--model.backbone", "gpt2-test",
        "--model.lr", "0.01",
        "--model.generation", '{"max_new_tokens": 6}',
        "--model.num_samples", "2",
        "--data", "lit_tasks.data.causal_lm.CausalLMDataModule",
        "--data.train_file", str(corpus / "train.jsonl"),
        "--data.val_file", str(corpus / "val.jsonl"),
        "--data.train_tokenizer_vocab_size", "300",
        "--data.cache_dir", str(corpus / "cache"),
        "--data.max_length", "32",
        "--data.batch_size", "8",
        "--trainer.max_epochs", "10",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.dir", str(run_dir),
        "--run.loggers", "[csv]",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """One fit (4 epochs of a tiny GPT-2, a few seconds) shared by the tests below."""
    run_dir = tmp_path_factory.mktemp("run")
    main(["fit", *clm_args(corpus, run_dir)])
    return run_dir


def test_fit_learns_and_writes_samples(trained, corpus, tmp_path):
    results = json.loads((trained / "results.json").read_text())
    assert results["best"]["monitor"] == "val/perplexity" and results["best"]["mode"] == "min"
    vocab = results["config"]["model"]["init_args"]["vocab_size"]
    assert 258 < vocab <= 300  # linked from the BPE the data trained
    main(["validate", *clm_args(corpus, tmp_path / "untrained")])  # the same model, no checkpoint
    untrained = json.loads((tmp_path / "untrained" / "results.json").read_text())["metrics"]["val/perplexity"]
    assert untrained > 0.5 * vocab
    assert results["best"]["score"] < 0.1 * untrained  # counting is easy once the previous word is used
    samples = (trained / "val_samples.txt").read_text()
    assert samples.count("=== val, epoch") == 10 and samples.count("--- prompt:") == 20


def test_loss_is_the_mean_over_real_next_tokens(corpus, trained):
    data = CausalLMDataModule(train_file=str(corpus / "train.jsonl"), val_file=str(corpus / "val.jsonl"),
                              tokenizer=str(next((corpus / "cache").glob("tokenizer-*"))), packing="rows",
                              max_length=32, batch_size=4)
    data.setup("validate")
    task = CausalLanguageModeling(backbone="gpt2-test", vocab_size=data.vocab_size)
    task.log = task.log_dict = lambda *a, **k: None  # no trainer loop to log into
    task.eval()  # no dropout: the two forwards below must agree
    batches = list(data.val_dataloader())
    assert len({int(b["attention_mask"].sum()) for b in batches}) > 1  # batches hold different token counts
    total, count = 0.0, 0
    for batch in batches:
        loss = task.step(batch, "val")
        logits = task.net(batch["input_ids"], batch["attention_mask"])
        nll, n = 0.0, 0
        for row, mask in zip(range(len(batch["input_ids"])), batch["attention_mask"]):
            length = int(mask.sum())
            log_p = F.log_softmax(logits[row, : length - 1].double(), -1)
            nll -= float(log_p.gather(1, batch["input_ids"][row, 1:length, None]).sum())
            n += length - 1
        assert float(loss) == pytest.approx(nll / n, rel=1e-5)
        total, count = total + nll, count + n
    perplexity = float(task.perplexity["val_perplexity"].compute())
    assert perplexity == pytest.approx(math.exp(total / count), rel=1e-4)  # per token, not a mean of batches


def test_predict_and_generate_continue_prompts(trained, corpus, capsys):
    ckpt = trained / "checkpoints" / "best.ckpt"
    main(["predict", *clm_args(corpus, trained / "predict"), "--ckpt_path", str(ckpt),
          "--data.predict_file", str(corpus / "prompts.txt")])
    rows = [json.loads(line) for line in (trained / "predict" / "predictions.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["three four five", "nine ten"]
    assert all(len(r["continuations"]) == 1 and r["continuations"][0] for r in rows)
    assert rows[0]["continuations"][0].split()[:2] == ["six", "seven"]  # it learnt to count
    capsys.readouterr()
    main(["generate", "--ckpt_path", str(ckpt), "--prompt", "three four five", "--max_new_tokens", "6", "--jsonl"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["continuations"] == rows[0]["continuations"]  # the same greedy decoding both ways
    main(["generate", "--ckpt_path", str(ckpt), "--prompt", "nine ten", "--max_new_tokens", "6", "--num_beams", "3",
          "--num_return_sequences", "2", "--jsonl"])
    assert len(json.loads(capsys.readouterr().out)["continuations"]) == 2


def test_an_exported_model_generates_the_same(trained, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "best.ckpt"
    main(["export", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "hf")])
    capsys.readouterr()
    outputs = []
    for source in (["--ckpt_path", str(ckpt)], ["--init_from", str(tmp_path / "hf")]):
        main(["generate", *source, "--prompt", "two three", "--max_new_tokens", "5", "--jsonl"])
        outputs.append(json.loads(capsys.readouterr().out)["continuations"])
    assert outputs[0] == outputs[1]


def generate_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *args])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_generation_errors_name_the_item(trained, corpus, capsys):
    ckpt = str(trained / "checkpoints" / "best.ckpt")
    long = " ".join(["one"] * 80)  # gpt2-test holds 64 positions
    err = generate_error(capsys, "--ckpt_path", ckpt, "--prompt", "two", "--prompt", long)
    assert "prompt 2 ('one one" in err and "tokens, but only 44 fit" in err and "truncate_prompts" in err
    main(["generate", "--ckpt_path", ckpt, "--prompt", long, "--truncate_prompts", "--max_new_tokens", "4"])
    assert "1 prompt(s) lost their beginning" in capsys.readouterr().err
    assert "has no tokens" in generate_error(capsys, "--ckpt_path", ckpt, "--prompt", "")
    assert "max_new_tokens is 64" in generate_error(capsys, "--ckpt_path", ckpt, "--prompt", "two",
                                                     "--max_new_tokens", "64")
    assert "--topp" in generate_error(capsys, "--ckpt_path", ckpt, "--prompt", "two", "--topp", "0.9")
    assert "top_p" in generate_error(capsys, "--ckpt_path", ckpt, "--prompt", "two", "--top_p", "1.5")
    with pytest.raises(ConfigError, match=r"model.generation: unknown generation option\(s\) \['topp'\]"):
        CausalLanguageModeling(backbone="gpt2-test", generation={"topp": 0.9})


def test_generate_refuses_a_model_without_an_lm_head(tmp_path, capsys):
    from lit_tasks import zoo

    zoo.save_pretrained(zoo.build("gpt2-test", "sequence_classification", num_labels=3), tmp_path / "cls")
    err = generate_error(capsys, "--init_from", str(tmp_path / "cls"), "--prompt", "two")
    assert "sequence_classification model; generate needs a causal language model" in err


def test_an_hf_gpt2_folder_validates_to_transformers_perplexity(corpus, trained, tmp_path):
    """`init_from` a folder saved by transformers (with the tokenizer files): validate's perplexity
    is exp of the loss transformers computes itself (labels = inputs, -100 on padding)."""
    transformers = pytest.importorskip("transformers")
    from lit_tasks.text import load_tokenizer

    tokenizer = load_tokenizer(next((corpus / "cache").glob("tokenizer-*")))
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=tokenizer.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=4)).eval()
    folder = tmp_path / "hf_gpt2"
    hf.save_pretrained(folder)
    tokenizer.save(folder)
    args = [a for a in clm_args(corpus, tmp_path / "run") if a not in ("--model.backbone", "gpt2-test")]
    args = [a for i, a in enumerate(args) if not (a == "--data.train_tokenizer_vocab_size" or
                                                  args[i - 1] == "--data.train_tokenizer_vocab_size")]
    main(["validate", *args, "--model.init_from", str(folder), "--data.packing", "rows", "--data.batch_size", "64"])
    ours = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]["val/perplexity"]
    data = CausalLMDataModule(val_file=str(corpus / "val.jsonl"), train_file=str(corpus / "train.jsonl"),
                              tokenizer=str(folder), packing="rows", max_length=32, batch_size=64)
    data.setup("validate")
    (batch,) = list(data.val_dataloader())
    with torch.no_grad():
        loss = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert ours == pytest.approx(math.exp(float(loss)), rel=1e-4)


@pytest.mark.slow
def test_ddp_perplexity_equals_single_process(corpus, trained, tmp_path):
    """Perplexity and accuracy pool token sums over ranks: 2 gloo processes give the one-process
    numbers, although the ranks' batches hold different numbers of tokens."""
    from helpers import validate_single_and_ddp

    args = [*clm_args(corpus, tmp_path), "--ckpt_path", str(trained / "checkpoints" / "best.ckpt"),
            "--data.packing", "rows", "--data.batch_size", "3"]
    args.remove("--run.dir")
    args.remove(str(tmp_path))
    one, two = validate_single_and_ddp(args, tmp_path)
    for key in ("val/perplexity", "val/acc", "val/loss"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-5), key
