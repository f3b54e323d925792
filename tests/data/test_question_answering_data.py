"""Contract tests for QuestionAnsweringDataModule: windows with a document stride, answers
mapped through offsets, batches, HF datasets on disk, caching, sharding, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import QA_FILLER, qa_rows, write_qa_tokenizer

from lit_tasks.data.question_answering import QuestionAnsweringDataModule, QuestionShardSampler
from lit_tasks.errors import DataError


@pytest.fixture()
def tok(tmp_path) -> Path:
    return write_qa_tokenizer(tmp_path / "tok")


def write_jsonl(file: Path, records: list[dict]) -> Path:
    file.write_text("".join(json.dumps(r) + "\n" for r in records))
    return file


def long_row(qid: str = "long") -> dict:
    """A context of ~70 word tokens with the answer near the middle."""
    before, after = " ".join(QA_FILLER * 2), " ".join(QA_FILLER[::-1])
    context = f"{before} the ball is big yellow . {after}"
    start = context.index("big yellow")
    return {"id": qid, "context": context, "question": "what colour is the ball ?",
            "answers": {"text": ["big yellow"], "answer_start": [start]}}


def data(tmp_path, tok, records, **kw) -> QuestionAnsweringDataModule:
    files = {"train_file": str(write_jsonl(tmp_path / "train.jsonl", records))}
    return QuestionAnsweringDataModule(**files, tokenizer=str(tok), **{"max_length": 24, "doc_stride": 5, **kw})


def test_long_context_windows_put_the_answer_on_its_characters(tmp_path, tok):
    row = long_row()
    dm = data(tmp_path, tok, [row], max_length=20, doc_stride=4)
    w = dm.windows("train")
    assert len(w) > 4 and (w.example == 0).all()
    assert (w.lengths <= 20).all()
    context = row["context"]
    held = 0
    for i in range(len(w)):
        a, b = w.starts[i], w.starts[i + 1]
        ids, offsets = w.ids[a:b], w.offsets[a:b]
        assert ids[0] == 2 and ids[-1] == 3  # [CLS] ... [SEP]
        inside = np.flatnonzero(offsets[:, 0] >= 0)
        assert (w.type_ids[a:b][inside] == 1).all() and (offsets[: inside[0], 0] == -1).all()
        first, last = w.positions[i]
        window_text = context[offsets[inside[0], 0]: offsets[inside[-1], 1]]
        if "big yellow" in window_text:
            held += 1
            assert context[offsets[first, 0]: offsets[last, 1]] == "big yellow"
            assert last - first == 1
        else:
            assert (first, last) == (0, 0)
        if i + 1 < len(w):  # consecutive windows share doc_stride context tokens
            nxt = w.offsets[w.starts[i + 1]: w.starts[i + 2]]
            nxt_inside = nxt[nxt[:, 0] >= 0]
            assert (offsets[inside][-4:] == nxt_inside[:4]).all()
    assert held >= 1
    # the windows together cover every character of the context that is not whitespace
    covered = np.zeros(len(context), dtype=bool)
    for s, e in w.offsets[w.offsets[:, 0] >= 0]:
        covered[s:e] = True
    assert all(covered[i] or context[i] == " " for i in range(len(context)))


def test_answer_inside_a_token_maps_to_that_token(tmp_path, tok):
    context = "the ball is red . the box is blue ."
    row = {"id": "x", "context": context, "question": "what colour is the ball ?",
           "answers": {"text": ["lue"], "answer_start": [context.index("lue")]}}  # part of one token
    w = data(tmp_path, tok, [row], max_length=32).windows("train")
    first, last = w.positions[0]
    assert first == last and context[w.offsets[first, 0]: w.offsets[first, 1]] == "blue"


def test_batches_and_unanswerable_questions(tmp_path, tok):
    rows = qa_rows(6, np.random.default_rng(0), "q", unanswerable_every=3)
    rows.append(long_row())
    train, val = write_jsonl(tmp_path / "train.jsonl", rows), write_jsonl(tmp_path / "val.jsonl", rows)
    dm = QuestionAnsweringDataModule(train_file=str(train), val_file=str(val), tokenizer=str(tok),
                                     max_length=24, doc_stride=5, batch_size=4, eval_batch_size=3)
    dm.setup("fit")
    batches = list(dm.val_dataloader())
    windows = dm.windows("val")
    assert sum(len(b["ids"]) for b in batches) == len(windows)
    ids = [i for b in batches for i in b["ids"]]
    assert ids == sorted(ids, key=[r["id"] for r in rows].index)  # in order, each question's windows together
    b = batches[0]
    assert set(b) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions", "offsets",
                      "ids", "num_windows", "contexts", "answers"}
    B, T = b["input_ids"].shape
    assert b["offsets"].shape == (B, T, 2) and b["offsets"].dtype == torch.long
    assert (b["offsets"][b["attention_mask"] == 0] == -1).all()  # padding is outside the context
    for batch in batches:
        for i, qid in enumerate(batch["ids"]):
            row = next(r for r in rows if r["id"] == qid)
            assert batch["contexts"][i] == row["context"] and batch["answers"][i] == row["answers"]["text"]
            assert batch["num_windows"][i] == int((windows.example == [r["id"] for r in rows].index(qid)).sum())
            if not row["answers"]["text"]:
                assert batch["start_positions"][i] == 0 and batch["end_positions"][i] == 0
    assert windows.example.max() == 6 and (np.bincount(windows.example) > 1).any()
    for i, r in enumerate(rows):  # the answer tokens of every window holding the answer cover its text
        holding = [n for n in np.flatnonzero(windows.example == i) if windows.positions[n, 0] > 0]
        assert bool(holding) == bool(r["answers"]["text"])
        for n in holding:
            first, last = windows.positions[n]
            offs = windows.offsets[windows.starts[n]: windows.starts[n + 1]]
            assert r["context"][offs[first, 0]: offs[last, 1]] == r["answers"]["text"][0]
    train = list(dm.train_dataloader())
    assert sum(len(x["ids"]) for x in train) == len(dm.windows("train"))


def test_list_of_answer_objects_and_row_ids(tmp_path, tok):
    context = "the ball is red ."
    rows = [{"context": context, "question": "what colour is the ball ?",
             "answers": [{"text": "red", "answer_start": 12}, {"text": "ball is red", "answer_start": 4}]}]
    dm = data(tmp_path, tok, rows, id_column=None)
    (row,) = dm.rows("train")
    assert row.answers == ("red", "ball is red") and row.starts == (12, 4)
    assert row.id == f"{tmp_path / 'train.jsonl'}#1"


def test_hf_dataset_on_disk(tmp_path, tok):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(1)
    splits = {name: qa_rows(n, rng, name, unanswerable_every=2) for name, n in (("train", 4), ("validation", 3))}
    features = datasets.Features({
        "id": datasets.Value("string"), "context": datasets.Value("string"), "question": datasets.Value("string"),
        "answers": {"text": datasets.Sequence(datasets.Value("string")),
                    "answer_start": datasets.Sequence(datasets.Value("int32"))},
    })
    dsd = datasets.DatasetDict({k: datasets.Dataset.from_list(v, features=features) for k, v in splits.items()})
    dsd.save_to_disk(str(tmp_path / "squad"))
    dm = QuestionAnsweringDataModule(hf_dataset=str(tmp_path / "squad"), tokenizer=str(tok), max_length=32, doc_stride=4)
    val = dm.rows("val")
    assert [r.id for r in val] == [r["id"] for r in splits["validation"]]
    assert [list(r.answers) for r in val] == [r["answers"]["text"] for r in splits["validation"]]
    assert val[0].where.endswith("validation row 0")
    assert len(dm.windows("train")) == 4


def test_cache_reuses_windows_and_notices_changes(tmp_path, tok):
    rows = [long_row()]
    kw = {"cache_dir": str(tmp_path / "cache"), "max_length": 20, "doc_stride": 4}
    first = data(tmp_path, tok, rows, **kw)
    a = first.windows("train")
    second = data(tmp_path, tok, rows, **kw)
    b = second.windows("train")
    assert (first.cache_hits["train"], second.cache_hits["train"]) == (False, True)
    for field in ("ids", "type_ids", "offsets", "starts", "positions", "example"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    third = data(tmp_path, tok, rows, **{**kw, "doc_stride": 3})
    third.windows("train")
    assert third.cache_hits["train"] is False


def test_shards_keep_each_question_on_one_rank():
    example = np.array([0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 4])
    shards = [list(QuestionShardSampler(example, 2, r)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(len(example)))  # every window once
    for shard in shards:
        questions = set(example[shard].tolist())
        assert all(set(np.flatnonzero(np.isin(example, [q])).tolist()) <= set(shard) for q in questions)


# ------------------------------------------------------------------------------ bad input


def bad(tmp_path, tok, record: dict, **kw) -> str:
    good = long_row("ok")
    with pytest.raises(DataError) as info:
        data(tmp_path, tok, [good, record], **kw).windows("train")
    return str(info.value)


def test_answer_not_at_its_start_names_file_and_line(tmp_path, tok):
    row = long_row("moved")
    row["answers"]["answer_start"] = [3]
    message = bad(tmp_path, tok, row)
    assert f"{tmp_path / 'train.jsonl'} line 2" in message and "'big yellow'" in message
    assert "answer_start 3" in message and "skip_bad_answers" in message
    row["answers"]["text"] = ["purple"]
    assert "not in the context" in bad(tmp_path, tok, row)


def test_skip_bad_answers_counts_and_logs(tmp_path, tok, caplog):
    row = long_row("moved")
    row["answers"]["answer_start"] = [3]
    dm = data(tmp_path, tok, [long_row("ok"), row, long_row("ok2")], skip_bad_answers=True)
    assert [r.id for r in dm.rows("train")] == ["ok", "ok2"]
    assert len(dm.skipped["train"]) == 1 and "line 2" in dm.skipped["train"][0]
    assert "1 row(s) left out" in caplog.text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.pop("question"), "the 'question' column is missing"),
        (lambda r: r.pop("answers"), "the 'answers' column is missing"),
        (lambda r: r.update(context="  "), "the 'context' field is empty"),
        (lambda r: r.update(question=""), "the 'question' field is empty"),
        (lambda r: r.update(id="ok"), "already used by"),
        (lambda r: r.update(answers={"text": ["a"]}), "expected {\"text\""),
        (lambda r: r.update(answers={"text": ["big"], "answer_start": [1, 2]}), "1 texts but 2 answer_start"),
        (lambda r: r.update(question="what colour is the ball " * 4), "the question is 20 tokens long"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, tok, change, expected):
    row = long_row("second")
    change(row)
    message = bad(tmp_path, tok, row)
    assert expected in message and f"{tmp_path / 'train.jsonl'} line 2" in message


def test_predict_file_needs_no_answers(tmp_path, tok):
    rows = [{"id": "p1", "context": "the ball is red .", "question": "what colour is the ball ?"}]
    dm = QuestionAnsweringDataModule(predict_file=str(write_jsonl(tmp_path / "p.jsonl", rows)), tokenizer=str(tok),
                                     max_length=24, doc_stride=4)
    dm.setup("predict")
    (batch,) = list(dm.predict_dataloader())
    assert batch["answers"] == [None] and batch["ids"] == ["p1"]
