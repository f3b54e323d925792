"""MaskedLMDataModule: corpus reading, sequence packing, NSP pairs, dynamic/fixed masking."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import write_corpus

from lit_tasks.data.masked_lm import MaskedLMDataModule, MaskingCollate, read_documents
from lit_tasks.data.samplers import ResumableSampler, SeededIndex
from lit_tasks.errors import ConfigError, DataError
from lit_tasks.text import train_wordpiece


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root / "train.txt", 120, seed=0)
    write_corpus(root / "val.txt", 20, seed=1)
    train_wordpiece([root / "train.txt"], 120, root / "tok")
    return root


def data(corpus, **kw) -> MaskedLMDataModule:
    args = {"train_file": str(corpus / "train.txt"), "val_file": str(corpus / "val.txt"),
            "tokenizer": str(corpus / "tok"), "max_length": 32, "batch_size": 8} | kw
    return MaskedLMDataModule(**args)


def pieces(dm, sentence: str) -> list[int]:
    return dm.tokenizer.encode_raw([sentence], truncation=False, add_special_tokens=False)[0].ids


def test_reading_plain_text_and_tables(tmp_path):
    text = tmp_path / "c.txt"
    text.write_text("\n\nfirst one.\nsecond one.\n\n\nthird.\n", encoding="utf-8")
    assert read_documents(text) == [["first one.", "second one."], ["third."]]
    table = tmp_path / "c.jsonl"
    table.write_text(json.dumps({"text": "a b.\n\nc d."}) + "\n" + json.dumps({"text": "e."}) + "\n")
    assert read_documents(table) == [["a b.", "c d."], ["e."]]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nnot \xff utf-8\n")
    with pytest.raises(DataError, match=r"bad.txt line 2: not UTF-8"):
        read_documents(bad)
    table.write_text(json.dumps({"text": "a"}) + "\n" + json.dumps({"body": "b"}) + "\n")
    with pytest.raises(DataError, match=r"c.jsonl line 2: the 'text' column is missing"):
        read_documents(table)


def test_packing_keeps_every_piece_in_document_order(corpus):
    dm = data(corpus, max_length=24)
    seqs = dm.sequences("train")
    tk = dm.tokenizer
    lengths = np.diff(seqs.starts)
    assert lengths.max() <= 24 and (seqs.next_sentence == -1).all() and (seqs.type_ids == 0).all()
    body = []
    for i in range(len(seqs)):
        ids = seqs.ids[seqs.starts[i]:seqs.starts[i + 1]].tolist()
        assert ids[0] == tk.cls and ids[-1] == tk.sep and tk.cls not in ids[1:-1] and tk.sep not in ids[1:-1]
        body += ids[1:-1]
    expected = [i for doc in read_documents(corpus / "train.txt") for s in doc for i in pieces(dm, s)]
    assert body == expected
    assert len(seqs) < sum(len(d) for d in read_documents(corpus / "train.txt"))  # sentences were packed


def test_nsp_pairs_are_true_continuations_or_other_documents(corpus, tmp_path):
    # every sentence starts with its document and line number, so a run of pieces has one place
    documents = [[f"doc{d} line{k} {s}" for k, s in enumerate(doc)] for d, doc in
                 enumerate(read_documents(corpus / "train.txt"))]
    unique = tmp_path / "unique.txt"
    unique.write_text("\n\n".join("\n".join(doc) for doc in documents))
    train_wordpiece([unique], 200, tmp_path / "tok")
    dm = data(corpus, train_file=str(unique), tokenizer=str(tmp_path / "tok"), nsp=True, max_length=48)
    assert dm.tokenizer.unk not in dm.corpus("train").ids
    seqs = dm.sequences("train")
    doc_tokens = [[i for s in doc for i in pieces(dm, s)] for doc in documents]
    tk = dm.tokenizer

    def places(segment):  # (document, start) of every contiguous occurrence of `segment`
        n = len(segment)
        return {(d, k) for d, toks in enumerate(doc_tokens) for k in range(len(toks) - n + 1) if toks[k:k + n] == segment}

    def find(segment):
        return {d for d, _ in places(segment)}

    labels = seqs.next_sentence
    assert set(labels.tolist()) == {0, 1}
    assert 0.35 < labels.mean() < 0.75  # half random, plus the one-sentence chunks that must be
    for i in range(len(seqs)):
        ids = seqs.ids[seqs.starts[i]:seqs.starts[i + 1]].tolist()
        types = seqs.type_ids[seqs.starts[i]:seqs.starts[i + 1]].tolist()
        assert len(ids) <= 48 and ids[0] == tk.cls and ids[-1] == tk.sep
        cut = ids.index(tk.sep)
        a, b = ids[1:cut], ids[cut + 1:-1]
        assert a and b and types == [0] * (cut + 1) + [1] * (len(b) + 1)
        if labels[i] == 0:
            # B follows A in its document (right after it, unless the pair was cut to fit)
            assert any(db == da and kb >= ka + len(a) for da, ka in places(a) for db, kb in places(b))
            if len(ids) < 48 - 1:
                assert find(a + b), "an uncut B continues A"
        else:
            assert find(a) and find(b) and find(a).isdisjoint(find(b)), "B comes from another document"


def test_nsp_val_pairs_are_fixed_train_pairs_follow_the_seed(corpus, monkeypatch):
    def built(seed: str):  # Lightning's seed_everything sets PL_GLOBAL_SEED
        monkeypatch.setenv("PL_GLOBAL_SEED", seed)
        dm = data(corpus, nsp=True)
        return dm.sequences("train"), dm.sequences("val")

    (train1, val1), (train2, val2), (train1b, _) = built("1"), built("2"), built("1")
    assert np.array_equal(val1.ids, val2.ids) and np.array_equal(val1.next_sentence, val2.next_sentence)
    assert not np.array_equal(train1.next_sentence, train2.next_sentence)
    assert np.array_equal(train1.ids, train1b.ids) and np.array_equal(train1.next_sentence, train1b.next_sentence)


def test_nsp_needs_two_documents(tmp_path, corpus):
    one = tmp_path / "one.txt"
    one.write_text("a cat sees a dog.\nthe dog sees a cat.\n")
    with pytest.raises(DataError, match="at least two documents"):
        data(corpus, train_file=str(one), nsp=True).sequences("train")


def batch_of(collate: MaskingCollate, items):
    return collate(items)


def test_masking_statistics(corpus):
    dm = data(corpus, max_length=64)
    tk = dm.tokenizer
    rng = np.random.default_rng(0)
    special = {tk.cls, tk.sep, tk.pad, tk.mask, tk.unk}
    normal = np.array([i for i in range(tk.vocab_size) if i not in special])
    items = []
    for index in range(600):
        body = rng.choice(normal, size=int(rng.integers(20, 62)))
        ids = np.concatenate([[tk.cls], body, [tk.sep]]).astype(np.int32)
        items.append({"input_ids": ids, "token_type_ids": np.zeros(len(ids), np.int8),
                      "word_starts": np.ones(len(ids), bool), "next_sentence": -1, "index": index, "seed": 3 + index})
    batch = MaskingCollate(tk, 0.15)(items)
    original = torch.full_like(batch["input_ids"], tk.pad)
    for k, x in enumerate(items):
        original[k, :len(x["input_ids"])] = torch.from_numpy(x["input_ids"].astype(np.int64))
    chosen = batch["labels"] != -100
    is_special = torch.isin(original, torch.tensor(sorted(special)))
    assert not (chosen & is_special).any(), "special tokens and padding are never chosen"
    assert torch.equal(batch["labels"][chosen], original[chosen])
    assert torch.equal(batch["input_ids"][~chosen], original[~chosen])  # only chosen positions change
    assert (batch["attention_mask"] == (original != tk.pad).long()).all()
    rate = chosen.sum() / (~is_special).sum()
    assert abs(rate - 0.15) < 0.01
    masked = (batch["input_ids"][chosen] == tk.mask).float().mean()
    kept = (batch["input_ids"][chosen] == original[chosen]).float().mean()
    replaced = 1 - masked - kept
    assert abs(masked - 0.8) < 0.03 and abs(kept - 0.1) < 0.025 and abs(replaced - 0.1) < 0.025
    assert not torch.isin(batch["input_ids"][chosen], torch.tensor([tk.cls, tk.sep, tk.pad, tk.unk])).any()


def test_whole_word_masking_takes_every_piece_of_a_word(corpus):
    dm = data(corpus, max_length=64, whole_word_mask=True)
    ds = dm._dataset("train")
    collate = MaskingCollate(dm.tokenizer, 0.15, whole_word=True)
    chosen_words = multi_piece = 0
    for index in range(len(ds)):
        item = ds[index]
        ids, labels = collate.mask_sequence(item["input_ids"], item["word_starts"], collate.rng(index, 7 * index))
        chosen = labels != -100
        word = np.cumsum(item["word_starts"])
        for w in np.unique(word[chosen]):
            assert chosen[word == w].all(), "all pieces of a chosen word are chosen"
            multi_piece += (word == w).sum() > 1
        chosen_words += len(np.unique(word[chosen]))
        assert chosen.sum() <= round(0.15 * (len(ids) - 2))
    tokens = [dm.tokenizer.backend.id_to_token(i) for i in ds.sequences.ids[ds.sequences.word_starts == 0]]
    assert tokens and all(t.startswith("##") for t in tokens)  # word starts come from the pre-tokenizer
    assert chosen_words > len(ds) and multi_piece > 10  # "un ##bel ##iev ##able" is masked whole


def test_masks_change_each_epoch_and_repeat_with_the_seed(corpus):
    dm = data(corpus)
    ds = dm._dataset("train")
    collate = MaskingCollate(dm.tokenizer, 0.15)

    def masks(epoch: int, seed: int = 7) -> dict[int, torch.Tensor]:
        """Each sample's labels, by index, as the training sampler hands them out in `epoch`."""
        sampler = ResumableSampler(ds, seed=seed)
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert sorted(keys) == list(range(len(ds))) and all(isinstance(k, SeededIndex) for k in keys)
        labels = collate([ds[k] for k in keys])["labels"]
        return {int(k): labels[n] for n, k in enumerate(keys)}

    first = masks(0)
    assert all(torch.equal(first[i], m) for i, m in masks(0).items())
    for other in (masks(1), masks(0, seed=8)):  # another epoch, another run seed
        assert sum(not torch.equal(first[i], m) for i, m in other.items()) > 0.9 * len(ds)
    # a sample's mask does not depend on its batch
    key = SeededIndex(5, 1234)
    single = collate([ds[key]])["labels"][0]
    assert torch.equal(single, collate([ds[SeededIndex(4, 99)], ds[key]])["labels"][1, :len(single)])


def test_val_masks_are_fixed_across_epochs_and_runs(corpus, monkeypatch):
    def val_inputs(dm):
        return [(b["input_ids"], b["labels"]) for b in dm._loader("val")]

    first = val_inputs(data(corpus))
    monkeypatch.setenv("PL_GLOBAL_SEED", "123")
    dm = data(corpus)
    for again in (val_inputs(dm), val_inputs(dm)):  # another run's seed; a second epoch
        assert all(torch.equal(x, y) for b1, b2 in zip(first, again) for x, y in zip(b1, b2))
    train = [b["labels"] for b in dm._loader("train")]
    assert sum((b != -100).sum() for b in train) > 0


def test_trained_tokenizer_is_cached_and_sizes_the_vocab(tmp_path, corpus):
    dm = data(corpus, tokenizer=None, train_tokenizer_vocab_size=50, cache_dir=str(tmp_path))
    assert dm.vocab_size == dm.tokenizer.vocab_size and dm.tokenizer.mask is not None
    (folder,) = tmp_path.glob("tokenizer-*")
    stamp = (folder / "tokenizer.json").stat().st_mtime_ns
    dm.setup("fit")
    again = data(corpus, tokenizer=None, train_tokenizer_vocab_size=50, cache_dir=str(tmp_path))
    again.setup("fit")
    assert (folder / "tokenizer.json").stat().st_mtime_ns == stamp and again.cache_hits == {"train": True, "val": True}
    assert np.array_equal(again.sequences("train").ids, dm.sequences("train").ids)


def test_hf_dataset_source(tmp_path, corpus):
    datasets = pytest.importorskip("datasets")
    docs = ["\n".join(d) for d in read_documents(corpus / "train.txt")]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"body": docs[:80]}),
                          "validation": datasets.Dataset.from_dict({"body": docs[80:]})}).save_to_disk(tmp_path / "hf")
    dm = MaskedLMDataModule(hf_dataset=str(tmp_path / "hf"), text_column="body", tokenizer=str(corpus / "tok"),
                            max_length=32, batch_size=4)
    assert dm.has_split("val") and not dm.has_split("test")
    batch = next(iter(dm._loader("val")))
    assert batch["input_ids"].shape[0] == 4 and (batch["labels"] != -100).any()


@pytest.mark.parametrize(("kw", "message"), [
    ({"tokenizer": None}, "exactly one of data.tokenizer"),
    ({"train_tokenizer_vocab_size": 50}, "exactly one of data.tokenizer"),
    ({"tokenizer": None, "train_tokenizer_vocab_size": 50}, "needs data.cache_dir"),
    ({"mlm_probability": 1.5}, "mlm_probability"),
])
def test_bad_settings_name_the_key(corpus, kw, message):
    with pytest.raises(ConfigError, match=message):
        data(corpus, **kw)
