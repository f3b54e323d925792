"""QuestionAnswering: span search over windows, null answers, loss, and the CLI end to end
(fit -> results.json with SQuAD metrics, predict -> answer text, bad input -> one paragraph)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import qa_args, run_cli, validate_single_and_ddp, write_qa_data, write_qa_tokenizer

from lit_tasks.commands import main
from lit_tasks.data.question_answering import QuestionAnsweringDataModule
from lit_tasks.metrics.squad import squad_scores
from lit_tasks.tasks import QuestionAnswering
from lit_tasks.tasks.answer_spans import AnswerCollector, Question, decide, merge_questions, window_candidates
from lit_tasks.tasks.question_answering import span_loss

NEG = -5.0


def offsets_for(starts: list[int], question_tokens: int = 2) -> torch.Tensor:
    """(1, T, 2) offsets: [CLS], question tokens, [SEP], context tokens of 3 characters at
    `starts`, [SEP]; -1 outside the context."""
    rows = [(-1, -1)] * (1 + question_tokens + 1) + [(s, s + 3) for s in starts] + [(-1, -1)]
    return torch.tensor([rows])


def logits(T: int, peaks: dict[int, float]) -> torch.Tensor:
    x = torch.full((1, T), NEG)
    for i, v in peaks.items():
        x[0, i] = v
    return x


def test_best_span_respects_order_length_and_context():
    offsets = offsets_for([0, 4, 8, 12, 16, 20])  # context tokens at positions 4..9
    T = offsets.shape[1]
    start = logits(T, {1: 9.0, 6: 3.0, 8: 1.0})  # position 1 is a question token: never a start
    end = logits(T, {5: 4.0, 7: 2.0, 9: 2.5, 10: 9.0})  # 5 ends before start 6; 10 is [SEP]
    (spans,), null = window_candidates(start, end, offsets, n_best=5, max_answer_length=30)
    score, a, e = spans[0]
    assert (a, e) == (8, 23) and score == pytest.approx(3.0 + 2.5)  # tokens 6..9
    scores = [s for s, _, _ in spans]
    assert all(a < e for _, a, e in spans) and scores == sorted(scores, reverse=True)
    assert null == [pytest.approx(2 * NEG)]
    (short,), _ = window_candidates(start, end, offsets, n_best=5, max_answer_length=2)  # at most 2 tokens
    assert short[0][1:] == (8, 15) and short[0][0] == pytest.approx(3.0 + 2.0)  # tokens 6..7


def question(spans, null, windows=1, answers=("x",), context="abcdefghijklmnopqrstuvwxyz") -> Question:
    return Question("q", context, list(answers), windows, windows, null, list(spans))


def test_decide_picks_text_and_applies_the_null_threshold():
    q = question([(5.0, 2, 5), (4.0, 0, 3), (5.0, 2, 5)], null=3.0)
    row = decide(q, null_answers=False, null_threshold=0.0)
    assert row["answer"] == "cde" and (row["start"], row["end"]) == (2, 5)
    assert row["score"] == pytest.approx(math.exp(5) / (math.exp(5) + math.exp(4)))  # duplicates count once
    with_null = decide(q, null_answers=True, null_threshold=0.0)
    assert with_null["answer"] == "cde"  # the span beats [CLS]
    q.null = 6.0
    assert decide(q, null_answers=True, null_threshold=0.0) | {"score": 0} == \
        {"id": "q", "answer": "", "score": 0, "start": None, "end": None}
    assert decide(q, null_answers=True, null_threshold=1.5)["answer"] == "cde"  # 6 - 5 <= 1.5
    assert decide(q, null_answers=False, null_threshold=0.0)["answer"] == "cde"  # v1: always answers


def test_collector_pools_windows_across_batches_and_processes():
    def batch(ids, windows):
        return {"ids": ids, "contexts": ["abcdefgh"] * len(ids), "answers": [["bc"]] * len(ids),
                "num_windows": torch.tensor(windows)}

    c = AnswerCollector()
    assert c.add(batch(["a", "a"], [3, 3]), [[(1.0, 0, 2)], [(4.0, 1, 3)]], [0.5, 0.2]) == []
    (done,) = c.add(batch(["a", "b"], [3, 2]), [[(2.0, 4, 6)], [(1.0, 0, 1)]], [0.1, 0.3])
    assert done.id == "a" and done.seen == 3 and done.null == pytest.approx(0.1)  # the lowest null score
    assert decide(done, False, 0.0)["answer"] == "bc"
    (left,) = c.drain()
    assert left.id == "b" and left.seen == 1 and c.drain() == []
    # the same question's windows decided on two processes, gathered
    other = Question("b", "abcdefgh", ["bc"], 2, 1, -1.0, [(3.0, 5, 7)])
    (merged,) = merge_questions([left, other])
    assert merged.seen == 2 and merged.null == -1.0 and decide(merged, False, 0.0)["answer"] == "fg"


@pytest.fixture()
def qa_files(tmp_path):
    tok = write_qa_tokenizer(tmp_path / "tok")
    files = write_qa_data(tmp_path / "qa", {"train": 32, "val": 12, "test": 10})
    return tok, files


def test_loss_ignores_padding_and_fits_one_batch(qa_files):
    tok, files = qa_files
    dm = QuestionAnsweringDataModule(train_file=str(files["train"]), tokenizer=str(tok), max_length=24, doc_stride=6,
                                     batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    task = QuestionAnswering(backbone="bert-test", backbone_config={"vocab_size": 40}).eval()
    positions = batch["start_positions"], batch["end_positions"]
    with torch.no_grad():
        start, end = task._logits(batch)  # (B, T)
        loss = span_loss(start, end, *positions)
        expected = sum(torch.nn.functional.cross_entropy(x, p) for x, p in zip((start, end), positions)) / 2
        assert loss.item() == pytest.approx(expected.item())
        # more padding columns change neither the real tokens' scores nor the loss
        pad = torch.full((start.shape[0], 3), dm.tokenizer.pad)
        wider = {"input_ids": torch.cat([batch["input_ids"], pad], 1),
                 "attention_mask": torch.cat([batch["attention_mask"], pad * 0], 1),
                 "token_type_ids": torch.cat([batch["token_type_ids"], pad * 0], 1)}
        wide_start, wide_end = task._logits(wider)
        assert torch.allclose(wide_start[:, : start.shape[1]], start, atol=1e-5)
        assert span_loss(wide_start, wide_end, *positions).item() == pytest.approx(loss.item(), abs=1e-5)
    task.train()  # a few steps on one batch fit it
    optimizer = torch.optim.Adam(task.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = span_loss(*task._logits(batch), *positions)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.slow
def test_fit_writes_squad_metrics_and_predict_writes_answers(tmp_path, qa_files):
    tok, files = qa_files
    args = qa_args(tok, files, tmp_path / "runs")
    fitted = run_cli("fit", *args, "--trainer.max_epochs", "1")
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "qa").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    metrics = results["metrics"]
    for key in ("val/exact_match", "val/f1", "val/loss", "test/exact_match", "test/f1", "val/has_answer_f1",
                "val/no_answer_exact_match", "train/loss"):
        assert key in metrics, key
    assert metrics["val/has_answer_total"] + metrics["val/no_answer_total"] == 12  # every question once
    assert results["best"]["monitor"] == "val/f1"

    predicted = run_cli("predict", *args, "--ckpt_path", "best")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "qa").iterdir()
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    test = {r["id"]: r for r in map(json.loads, files["test"].read_text().splitlines())}
    assert sorted(r["id"] for r in rows) == sorted(test)  # one row per question, windows pooled
    # the test metrics of fit (best checkpoint) are the SQuAD scores of these answers (same checkpoint)
    rescored = squad_scores({r["id"]: r["answer"] for r in rows},
                            {qid: row["answers"]["text"] for qid, row in test.items()})
    assert rescored["exact_match"] == pytest.approx(metrics["test/exact_match"], abs=1e-4)
    assert rescored["f1"] == pytest.approx(metrics["test/f1"], abs=1e-4)
    # `score` on the rows gives every test metric of fit exactly: the training's own metric code (docs/scoring.md)
    scored = tmp_path / "scores.json"
    main(["score", "--metric", "squad", "--predictions", str(run_dir / "predictions.jsonl"), "--out", str(scored)])
    assert json.loads(scored.read_text()) == {k.removeprefix("test/"): v for k, v in metrics.items()
                                              if k.startswith("test/") and k != "test/loss"}
    for row in rows:
        assert set(row) == {"id", "answer", "score", "start", "end", "true_answers"}
        assert 0 <= row["score"] <= 1
        if row["answer"]:
            assert test[row["id"]]["context"][row["start"]: row["end"]] == row["answer"]
        else:
            assert row["start"] is None and row["end"] is None
        assert row["true_answers"] == test[row["id"]]["answers"]["text"]


def test_cli_bad_answer_is_one_paragraph(tmp_path, qa_files, capsys):
    tok, files = qa_files
    lines = files["train"].read_text().splitlines()
    row = json.loads(lines[2])
    row["answers"] = {"text": ["purple"], "answer_start": [0]}
    lines[2] = json.dumps(row)
    files["train"].write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *qa_args(tok, files, tmp_path / "runs")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{files['train']} line 3" in err and "'purple'" in err and "answer_start 0" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_ddp_validation_equals_single_process(tmp_path, qa_files):
    """Two CPU processes (gloo) score every question once, with the single-process figures; eval
    batches of 3 windows split questions of several windows across batches."""
    tok, files = qa_files
    args = [*qa_args(tok, files, tmp_path / "runs"), "--data.eval_batch_size", "3", "--model.null_threshold", "-1"]
    one, two = validate_single_and_ddp(args, tmp_path)
    val = {k: v for k, v in one["metrics"].items() if k.startswith("val/")}
    assert val["val/has_answer_total"] + val["val/no_answer_total"] == 12
    for key, value in val.items():
        assert two["metrics"][key] == pytest.approx(value, abs=1e-4), key
