"""Denoising pretraining data: BART text infilling and sentence permutation, T5 span corruption,
and DenoisingDataModule (packing, per-row seeded noise, resume, errors)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from helpers import write_corpus
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import models, pre_tokenizers, trainers

from lit_tasks.data.denoising import (
    BartCollate,
    DenoisingDataModule,
    permute_sentences,
    span_corruption,
    t5_lengths,
    t5_noise_counts,
    t5_raw_length,
    text_infilling,
)
from lit_tasks.data.masked_lm import read_documents
from lit_tasks.data.samplers import ResumableSampler, SeededIndex
from lit_tasks.errors import ConfigError, DataError

MASK = -1
BART_SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "mask_token": "<mask>",
                "unk_token": "<unk>"}
T5_SPECIAL = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def word_tokenizer(folder, texts, special: dict[str, str], sentinels: int = 0):
    """A word-level tokenizer of ``texts`` with the ``special`` tokens (config key -> token) and
    ``sentinels`` <extra_id_N> tokens, saved to ``folder``."""
    extra = [f"<extra_id_{i}>" for i in range(sentinels)]
    backend = RustTokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=[*special.values(), *extra]))
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    config = {**special, "additional_special_tokens": extra}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root / "train.txt", 60, seed=0)
    write_corpus(root / "val.txt", 12, seed=1)
    lines = (root / "train.txt").read_text().splitlines()
    word_tokenizer(root / "bart_tok", lines, BART_SPECIAL)
    word_tokenizer(root / "t5_tok", lines, T5_SPECIAL, sentinels=20)
    return root


def data(corpus, objective="bart", **kw) -> DenoisingDataModule:
    args = {"train_file": str(corpus / "train.txt"), "val_file": str(corpus / "val.txt"),
            "tokenizer": str(corpus / f"{objective}_tok"), "objective": objective, "max_length": 40,
            "batch_size": 8} | kw
    return DenoisingDataModule(**args)


def pattern(original, mask: int) -> str:
    """A regex over "id," strings that a source matches when each of its masks stands for a
    run of zero or more tokens of ``original`` and every other token is kept in order."""
    return "".join(r"(?:-?\d+,)*?" if t == mask else f"{t}," for t in original)


def infilled_from(source, original, mask: int) -> bool:
    return re.fullmatch(pattern(source, mask), "".join(f"{t}," for t in original)) is not None


# ------------------------------------------------------------------------------------ BART noise


def spans_of(noised: np.ndarray, n: int) -> list[int]:
    """The span length behind each mask of ``text_infilling(np.arange(n))``: the ids skipped."""
    lengths, last = [], -1
    for k, t in enumerate(noised):
        if t == MASK:
            nxt = noised[k + 1] if k + 1 < len(noised) else n
            assert nxt != MASK, "two masks never touch"
            lengths.append(int(nxt - last - 1))
        else:
            assert t > last, "kept tokens stay in order"
            last = t
    return lengths


def test_text_infilling_statistics():
    n, draws = 400, 300
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(draws):
        noised = text_infilling(np.arange(n), rng, MASK)
        drawn = spans_of(noised, n)
        assert sum(drawn) == round(0.3 * n), "exactly round(0.3 * n) tokens masked"
        assert len(noised) == n - sum(drawn) + len(drawn)
        lengths += drawn
    lengths = np.array(lengths)
    assert abs(lengths.mean() - 3.0) < 0.1 and abs(lengths.var() - 3.0) < 0.35  # Poisson(3): mean = variance
    assert abs((lengths == 0).mean() - math.exp(-3)) < 0.012  # zero-length spans insert a mask
    short = [text_infilling(np.arange(20), rng, MASK, ratio=0.5, poisson_lambda=1.0) for _ in range(200)]
    assert all(sum(spans_of(s, 20)) == 10 for s in short)


def test_text_infilling_edge_lengths():
    rng = np.random.default_rng(1)
    assert text_infilling(np.array([7]), rng, MASK).tolist() == [7]  # round(0.3) = 0 tokens: unchanged
    for n in (2, 3, 4, 5):
        for _ in range(200):
            noised = text_infilling(np.arange(n), rng, MASK)
            assert sum(spans_of(noised, n)) == round(0.3 * n)


def test_permute_sentences_moves_whole_sentences():
    rng = np.random.default_rng(2)
    sentences = [np.arange(10 * k, 10 * k + 1 + k) for k in range(6)]
    orders = set()
    for _ in range(200):
        out = permute_sentences(sentences, rng)
        assert sorted(map(tuple, out)) == sorted(map(tuple, sentences))
        orders.add(tuple(int(s[0]) for s in out))
    assert len(orders) > 150  # 720 orders possible


# ------------------------------------------------------------------------------------ T5 noise


def merge(inputs: np.ndarray, targets: np.ndarray, sentinels: list[int]) -> list[int]:
    """The original text from T5's inputs and targets: each sentinel of the inputs is replaced by
    what follows the same sentinel in the targets."""
    is_sentinel = np.isin(targets, sentinels)
    where = np.flatnonzero(is_sentinel).tolist() + [len(targets)]
    spans = {int(targets[a]): targets[a + 1: b].tolist() for a, b in zip(where, where[1:])}
    return [t for x in inputs.tolist() for t in (spans[x] if x in sentinels else [x])]


def test_span_corruption_counts_and_reconstruction():
    rng = np.random.default_rng(3)
    sentinels = list(range(-1, -101, -1))
    for n in (2, 3, 7, 20, 57, 100, 568):
        noise, spans = t5_noise_counts(n)
        assert noise == min(max(round(n * 0.15), 1), n - 1) and spans == max(round(noise / 3), 1)
        for _ in range(30):
            ids = rng.integers(0, 1000, n)
            inputs, targets = span_corruption(ids, rng, sentinels)
            assert merge(inputs, targets, sentinels) == ids.tolist()
            assert inputs[np.isin(inputs, sentinels)].tolist() == sentinels[:spans]  # in order, one per span
            assert targets[0] == sentinels[0] and np.isin(targets, sentinels).sum() == spans
            assert len(targets) - spans == noise  # exactly round(n * 0.15) noise tokens
            assert (len(inputs) + 1, len(targets) + 1) == t5_lengths(n)


def test_span_corruption_layout_statistics():
    """Spans average mean_span_length; noise lands everywhere but on the first token (a kept run
    always comes first) and always on the last (T5's layout ends with noise)."""
    rng = np.random.default_rng(4)
    n, draws = 200, 2000
    sentinels = list(range(-1, -101, -1))
    hits = np.zeros(n)
    span_lengths = []
    for _ in range(draws):
        ids = np.arange(n)
        inputs, targets = span_corruption(ids, rng, sentinels)
        noise = np.setdiff1d(ids, inputs)
        hits[noise] += 1
        span_lengths += np.diff(np.flatnonzero(np.isin(np.append(targets, -1000), sentinels + [-1000]))).tolist()
    span_lengths = np.array(span_lengths) - 1  # the tokens after each sentinel
    assert abs(span_lengths.mean() - 30 / 10) < 1e-9 and span_lengths.min() >= 1 and span_lengths.std() > 1
    assert hits[0] == 0 and hits[-1] == draws
    assert np.abs(hits[20:180] / draws - 0.15).max() < 0.04


def test_t5_lengths_follow_density_and_span_length():
    assert t5_raw_length(512) == 568 and t5_lengths(568) == (512, 114)  # T5's own figures
    for max_length in (8, 40, 100, 333):
        raw = t5_raw_length(max_length)
        assert t5_lengths(raw)[0] <= max_length < t5_lengths(raw + 1)[0]
    with pytest.raises(ValueError, match="5 spans but has 2 sentinels"):
        span_corruption(np.arange(100), np.random.default_rng(0), [-1, -2])


# ------------------------------------------------------------------------------------ DataModule


def test_bart_rows_pack_sentences_and_labels_are_the_original(corpus):
    dm = data(corpus, permute_sentences=False)
    tk = dm.tokenizer
    ds = dm._dataset("train")
    rows = ds.rows
    assert rows.lengths.max() <= 38 and dm.cut_sentences["train"] == 0
    body = [i for docs in read_documents(corpus / "train.txt") for s in docs
            for i in tk.encode_raw([s], add_special_tokens=False)[0].ids]
    assert rows.ids.tolist() == body  # every token, in order
    assert len(rows) < sum(len(d) for d in read_documents(corpus / "train.txt"))  # sentences were packed
    val = dm._dataset("val").rows
    batch = next(iter(dm._loader("val")))
    for k in range(len(batch["index"])):
        row = val.ids[val.span(int(batch["index"][k]))].tolist()
        labels = batch["labels"][k][batch["labels"][k] != -100].tolist()
        assert labels == [tk.bos, *row, tk.eos]
        source = batch["input_ids"][k][batch["attention_mask"][k] == 1].tolist()
        assert source[0] == tk.bos and source[-1] == tk.eos and len(source) <= 40
        assert infilled_from(source[1:-1], row, tk.mask)
        assert (batch["input_ids"][k][batch["attention_mask"][k] == 0] == tk.pad).all()


def test_bart_permutes_the_sentences_of_a_row_then_infills(corpus):
    dm = data(corpus, max_length=60)
    ds, collate = dm._dataset("train"), dm._collate("train")
    permuted = 0
    for index in range(len(ds)):
        item = ds[SeededIndex(index, 100 + index)]
        source, target = collate.pair(item, collate.rng(index, 100 + index))
        sentences = np.split(item["ids"], np.cumsum(item["sentence_lengths"])[:-1])
        order = np.random.default_rng(100 + index).permutation(len(sentences))  # drawn first, then the spans
        assert target.tolist() == [dm.tokenizer.bos, *item["ids"].tolist(), dm.tokenizer.eos]
        shuffled = np.concatenate([sentences[i] for i in order])
        assert infilled_from(source[1:-1].tolist(), shuffled.tolist(), dm.tokenizer.mask)
        permuted += not np.array_equal(shuffled, item["ids"])
    assert permuted > len(ds) / 3


def test_bart_source_made_too_long_by_insertions_is_cut_and_counted():
    collate = BartCollate(bos=0, eos=1, pad=2, mask=3, max_length=5)
    items = [{"ids": np.array([10, 11, 12], np.int32), "sentence_lengths": np.array([3]), "index": i, "seed": i}
             for i in range(300)]
    batch = collate(items)
    assert collate.cut_sources > 0 and batch["input_ids"].shape[1] == 5
    lengths = batch["attention_mask"].sum(1)
    assert (batch["input_ids"][torch.arange(300), lengths - 1] == 1).all()  # every source ends with </s>


def test_t5_batches_fit_max_length_and_rebuild_the_row(corpus):
    dm = data(corpus, "t5", max_length=24)
    tk = dm.tokenizer
    assert dm.row_length == t5_raw_length(24) and dm.target_length == t5_lengths(dm.row_length)[1]
    ds = dm._dataset("train")
    assert (ds.rows.lengths[:-1] == dm.row_length).all()  # documents run on from row to row, as in T5
    assert ds.rows.ids.tolist() == dm.encoded("train").ids.tolist()[: ds.rows.starts[-1]]
    sentinels = tk.sentinels
    for batch in dm._loader("train"):
        assert batch["input_ids"].shape[1] <= 24 and batch["labels"].shape[1] <= dm.target_length
        for k in range(len(batch["index"])):
            inputs = batch["input_ids"][k][batch["attention_mask"][k] == 1].numpy()
            targets = batch["labels"][k][batch["labels"][k] != -100].numpy()
            assert inputs[-1] == tk.eos and targets[-1] == tk.eos
            row = ds.rows.ids[ds.rows.span(int(batch["index"][k]))].tolist()
            assert merge(inputs[:-1], targets[:-1], sentinels) == row


def test_same_seed_same_noise_new_epoch_new_noise(corpus):
    for objective in ("bart", "t5"):  # T5 rows of under ~30 tokens have one span, always at the end: too few choices
        dm = data(corpus, objective, max_length=64)
        ds, collate = dm._dataset("train"), dm._collate("train")

        def noise(epoch: int, seed: int = 7) -> dict[int, torch.Tensor]:
            sampler = ResumableSampler(ds, seed=seed)
            sampler.set_epoch(epoch)
            keys = list(sampler)
            inputs = collate([ds[k] for k in keys])["input_ids"]
            return {int(k): inputs[n] for n, k in enumerate(keys)}

        first = noise(0)
        assert all(torch.equal(first[i], x) for i, x in noise(0).items())
        for other in (noise(1), noise(0, seed=8)):  # another epoch, another run seed
            assert sum(not torch.equal(first[i], x) for i, x in other.items()) > 0.8 * len(ds)


def test_val_noise_is_independent_of_run_seed_and_batch(corpus, monkeypatch):
    for objective in ("bart", "t5"):
        def val_batches(dm):
            return [(b["input_ids"], b["labels"]) for b in dm._loader("val")]

        first = val_batches(data(corpus, objective))
        monkeypatch.setenv("PL_GLOBAL_SEED", "123")
        dm = data(corpus, objective)
        for again in (val_batches(dm), val_batches(dm)):  # another run's seed; a second epoch
            assert all(torch.equal(x, y) for b1, b2 in zip(first, again) for x, y in zip(b1, b2))
        ds, collate = dm._dataset("val"), dm._collate("val")
        alone = collate([ds[5]])
        among = collate([ds[2], ds[5], ds[0]])
        width = int(alone["attention_mask"].sum())
        assert torch.equal(alone["input_ids"][0], among["input_ids"][1, :width])
        monkeypatch.delenv("PL_GLOBAL_SEED")


@pytest.mark.parametrize("objective", ["bart", "t5"])
def test_resume_mid_epoch_equals_an_uninterrupted_run(corpus, monkeypatch, objective):
    monkeypatch.setenv("PL_GLOBAL_SEED", "5")

    def loader():
        loader = data(corpus, objective, batch_size=4).train_dataloader()
        loader.sampler.set_epoch(2)
        return loader

    full = [(b["input_ids"], b["labels"]) for b in loader()]
    interrupted = loader()
    it = iter(interrupted)
    next(it), next(it), next(it)
    resumed = loader()
    resumed.load_state_dict(interrupted.state_dict())
    resumed.sampler.set_epoch(2)
    rest = [(b["input_ids"], b["labels"]) for b in resumed]
    assert len(rest) == len(full) - 3
    assert all(torch.equal(x, y) for b1, b2 in zip(rest, full[3:]) for x, y in zip(b1, b2))


def test_long_sentences_are_cut_and_counted_a_short_t5_row_dropped(tmp_path, corpus):
    text = tmp_path / "long.jsonl"
    long = " ".join(["the cat sees the river ."] * 12)
    text.write_text(json.dumps({"text": long}) + "\n" + json.dumps({"text": "cat"}) + "\n")
    dm = data(corpus, train_file=str(text), val_file=None, max_length=20)
    rows = dm._dataset("train").rows
    assert dm.cut_sentences["train"] == 1 and rows.lengths.max() == 18 and rows.ids.size == 73
    dm = data(corpus, "t5", train_file=str(text), val_file=None, max_length=22)  # rows of 24 tokens
    rows = dm._dataset("train").rows
    assert dm.short_rows["train"] == 1 and rows.lengths.tolist() == [24, 24, 24]  # 73 = 3 * 24 + "cat"


def test_tokenizer_without_what_the_objective_needs(tmp_path, corpus):
    lines = (corpus / "train.txt").read_text().splitlines()
    no_mask = word_tokenizer(tmp_path / "no_mask", lines, {k: v for k, v in BART_SPECIAL.items() if k != "mask_token"})
    with pytest.raises(DataError, match=r"no_mask.*lacks the special token\(s\) mask"):
        data(corpus, tokenizer=str(no_mask)).setup("fit")
    with pytest.raises(DataError, match=r"bart_tok.*0 sentinel token"):
        data(corpus, "t5", tokenizer=str(corpus / "bart_tok")).setup("fit")
    few = word_tokenizer(tmp_path / "few", lines, T5_SPECIAL, sentinels=2)
    need = t5_noise_counts(t5_raw_length(64))[1]
    with pytest.raises(DataError, match=rf"few.*has 2 sentinel.*needs {need}"):
        data(corpus, "t5", tokenizer=str(few), max_length=64).setup("fit")
    assert data(corpus, "t5", tokenizer=str(few), max_length=40).tokenizer.sentinels  # 2 spans: enough
    with pytest.raises(DataError, match="no predict step"):
        data(corpus)._make_dataset("predict")


@pytest.mark.parametrize(("kw", "message"), [
    ({"objective": "mass"}, "data.objective"),
    ({"mask_ratio": 1.0}, "data.mask_ratio"),
    ({"poisson_lambda": 0.0}, "data.poisson_lambda"),
    ({"noise_density": 0.0}, "data.noise_density"),
    ({"mean_span_length": 0.5}, "data.mean_span_length"),
    ({"max_length": 2}, "data.max_length"),
    ({"objective": "t5", "max_length": 2}, "data.max_length"),
    ({"train_file": None}, "no training data"),
])
def test_bad_settings_name_the_key(corpus, kw, message):
    with pytest.raises(ConfigError, match=message):
        DenoisingDataModule(**({"train_file": str(corpus / "train.txt"), "tokenizer": str(corpus / "bart_tok")} | kw))


def test_hf_dataset_source(tmp_path, corpus):
    datasets = pytest.importorskip("datasets")
    docs = ["\n".join(d) for d in read_documents(corpus / "train.txt")]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"body": docs[:50]}),
                          "validation": datasets.Dataset.from_dict({"body": docs[50:]})}).save_to_disk(tmp_path / "hf")
    dm = DenoisingDataModule(hf_dataset=str(tmp_path / "hf"), text_column="body", tokenizer=str(corpus / "bart_tok"),
                             max_length=32, batch_size=4)
    assert dm.has_split("val") and not dm.has_split("test") and not dm.has_split("predict")
    batch = next(iter(dm._loader("val")))
    assert batch["input_ids"].shape[0] == 4 and (batch["input_ids"] == dm.tokenizer.mask).any()


@pytest.mark.parametrize("objective, kind", [("bart", "BPE"), ("t5", "Unigram")])
def test_a_tokenizer_trained_on_the_train_sentences(tmp_path, corpus, objective, kind):
    """train_tokenizer_vocab_size: BART's BPE (with <mask>) or T5's Unigram (with sentinels) from
    the train split, kept in cache_dir, found again by a second DataModule."""
    dm = data(corpus, objective, tokenizer=None, train_tokenizer_vocab_size=300, cache_dir=str(tmp_path))
    tk = dm.tokenizer
    (trained,) = tmp_path.glob("tokenizer-*/tokenizer.json")
    assert json.loads(trained.read_text())["model"]["type"] == kind
    assert tk.vocab_size <= 300 and tk.eos is not None and tk.pad is not None
    if objective == "bart":
        assert tk.mask is not None and tk.bos is not None
    else:
        assert len(tk.sentinels) == 100
    first = read_documents(str(corpus / "train.txt"), "text")[0][0]
    assert tk.decode(tk.encode_raw([first], truncation=False, add_special_tokens=False)[0].ids).strip() == first
    batch = next(iter(dm._loader("train")))
    assert batch["labels"].shape[0] == 8
    again = data(corpus, objective, tokenizer=None, train_tokenizer_vocab_size=300, cache_dir=str(tmp_path))
    assert again.tokenizer.vocab_size == tk.vocab_size
    assert len(list(tmp_path.glob("tokenizer-*"))) == 1
