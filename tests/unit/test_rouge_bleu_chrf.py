"""ROUGE (rouge-score), corpus BLEU and chrF (sacreBLEU): our values equal direct calls of the
reference packages, over uneven batches and over two gloo processes with uneven shards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from lit_tasks.errors import ConfigError, DataError
from lit_tasks.metrics.rouge import ROUGE_TYPES, RougeMetric, rouge_scores
from lit_tasks.metrics.translation import BleuChrfMetric, bleu_chrf

PREDICTIONS = [
    "it was happy .\nThe cat sat on the mat .",  # sentences in the other order: ROUGE-Lsum > ROUGE-L
    "Köln ist eine schöne Stadt am Rhein — Straße für Straße.",
    "",  # an empty prediction
    "The dogs were running quickly to the park",
    "police killed the gunman on Tuesday",
    "汉字 text 中文 , ok",
    "A b c d e f g h i j",
]
REFERENCES = [
    "The cat sat on the mat .\nIt was very happy .",
    "Köln liegt am Rhein, eine schöne Stadt.",
    "there is a reference here",
    ["the dog runs quickly to a park", "dogs ran fast to the park"],  # several references
    ["the gunman was shot dead by police", "police kill the gunman", "gunman police tuesday"],
    "中文 text , ok",
    "a b c d e f g h i j k",
]


def ref_lists(references):
    return [[r] if isinstance(r, str) else list(r) for r in references]


def direct_rouge(predictions, references, use_stemmer=True) -> dict[str, float]:
    """rouge-score itself: the mean over examples of each type's F-measure, x 100."""
    scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    rows = [scorer.score_multi(refs, pred) if len(refs) > 1 else scorer.score(refs[0], pred)
            for pred, refs in zip(predictions, ref_lists(references))]
    return {k: 100 * float(np.mean([row[k].fmeasure for row in rows])) for k in ROUGE_TYPES}


def streams(references):
    """sacreBLEU's layout, built here independently of ours: stream k = every k-th reference."""
    refs = ref_lists(references)
    return [[r[k] if k < len(r) else None for r in refs] for k in range(max(map(len, refs)))]


def direct_bleu_chrf(predictions, references, tokenize="13a", word_order=0) -> dict[str, float]:
    return {"bleu": sacrebleu.corpus_bleu(predictions, streams(references), tokenize=tokenize).score,
            "chrf": sacrebleu.corpus_chrf(predictions, streams(references), word_order=word_order).score}


def batches(n, sizes):
    """Index lists of consecutive batches of the given sizes covering 0..n-1."""
    out, start = [], 0
    for size in sizes:
        out.append(list(range(start, min(n, start + size))))
        start += size
    assert start >= n
    return out


def run_batches(metric, indices_per_batch):
    for idx in indices_per_batch:
        metric.update([PREDICTIONS[i] for i in idx], [REFERENCES[i] for i in idx])
    return {k: v.item() for k, v in metric.compute().items()}


# ------------------------------------------------------------------------------------ ROUGE


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_equals_rouge_score(use_stemmer):
    ours = rouge_scores(PREDICTIONS, REFERENCES, use_stemmer=use_stemmer)
    assert ours == pytest.approx(direct_rouge(PREDICTIONS, REFERENCES, use_stemmer), rel=1e-12, abs=1e-12)
    assert set(ours) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}


def test_rouge_conventions_percent_stemming_lsum_and_best_reference():
    """Defaults: percent, Porter stemming; Lsum reads lines as sentences; several references
    take the best one (not the first, not the mean)."""
    assert rouge_scores(["a b c"], ["a b c"]) == {k: 100.0 for k in ROUGE_TYPES}
    stemmed = rouge_scores(["the dogs were running"], ["the dog runs"])
    assert stemmed == pytest.approx(direct_rouge(["the dogs were running"], ["the dog runs"], use_stemmer=True))
    assert stemmed["rouge1"] > rouge_scores(["the dogs were running"], ["the dog runs"], use_stemmer=False)["rouge1"]

    swapped = rouge_scores(PREDICTIONS[:1], REFERENCES[:1])
    assert swapped["rougeLsum"] > swapped["rougeL"] + 10  # the test data is sensitive to the split
    flat = rouge_scores([PREDICTIONS[0].replace("\n", " ")], [REFERENCES[0].replace("\n", " ")])
    assert flat["rougeLsum"] == pytest.approx(flat["rougeL"])  # one line: Lsum is L

    pred, refs = PREDICTIONS[4], REFERENCES[4]
    each = [rouge_scores([pred], [r]) for r in refs]
    best = rouge_scores([pred], [refs])
    for k in ROUGE_TYPES:
        assert best[k] == pytest.approx(max(e[k] for e in each))
    assert best["rouge1"] > each[0]["rouge1"]  # the first reference is not the best one

    # rouge-score's tokenizer keeps [a-z0-9] only: identical CJK text has no tokens and scores 0
    assert rouge_scores(["中文"], ["中文"]) == {k: 0.0 for k in ROUGE_TYPES}


def test_rouge_metric_over_uneven_batches_equals_one_call():
    one = direct_rouge(PREDICTIONS, REFERENCES)
    split = run_batches(RougeMetric(), batches(len(PREDICTIONS), [3, 1, 2, 1]))
    assert split == pytest.approx(one, rel=1e-12)
    # a mean of batch means would not pass: the batches are uneven and their scores differ
    means = [direct_rouge([PREDICTIONS[i] for i in b], [REFERENCES[i] for i in b])["rouge1"]
             for b in batches(len(PREDICTIONS), [3, 1, 2, 1])]
    assert float(np.mean(means)) != pytest.approx(one["rouge1"], rel=1e-3)


def test_rouge_metric_clones_and_resets():
    metric = RougeMetric(use_stemmer=False)
    metric.update(PREDICTIONS[:2], REFERENCES[:2])
    copy = metric.clone()
    metric.reset()
    metric.update(PREDICTIONS[2:], REFERENCES[2:])
    assert {k: v.item() for k, v in copy.compute().items()} == pytest.approx(
        direct_rouge(PREDICTIONS[:2], REFERENCES[:2], use_stemmer=False))
    assert {k: v.item() for k, v in metric.compute().items()} == pytest.approx(
        direct_rouge(PREDICTIONS[2:], REFERENCES[2:], use_stemmer=False))


# ---------------------------------------------------------------------------- BLEU and chrF


@pytest.mark.parametrize("tokenize", ["13a", "intl", "char", "none"])
def test_bleu_chrf_equal_sacrebleu_corpus_scores(tokenize):
    ours = bleu_chrf(PREDICTIONS, REFERENCES, tokenize=tokenize)
    assert ours == direct_bleu_chrf(PREDICTIONS, REFERENCES, tokenize=tokenize)  # bit for bit
    assert 0 < ours["bleu"] < 100 and 0 < ours["chrf"] < 100


def test_chrf_plus_plus_and_single_references():
    ours = bleu_chrf(PREDICTIONS, REFERENCES, word_order=2)
    assert ours == direct_bleu_chrf(PREDICTIONS, REFERENCES, word_order=2)
    assert ours["chrf"] != bleu_chrf(PREDICTIONS, REFERENCES)["chrf"]
    firsts = [r if isinstance(r, str) else r[0] for r in REFERENCES]
    assert bleu_chrf(PREDICTIONS, firsts) == direct_bleu_chrf(PREDICTIONS, firsts)


def test_bleu_chrf_metric_over_uneven_batches_equals_one_corpus():
    one = direct_bleu_chrf(PREDICTIONS, REFERENCES)
    split = run_batches(BleuChrfMetric(), batches(len(PREDICTIONS), [3, 1, 2, 1]))
    assert split == one
    # not a mean of sentence or batch scores: those differ from the corpus score here
    per_batch = [direct_bleu_chrf([PREDICTIONS[i] for i in b], [REFERENCES[i] for i in b])
                 for b in batches(len(PREDICTIONS), [3, 1, 2, 1])]
    assert abs(np.mean([s["bleu"] for s in per_batch]) - one["bleu"]) > 1
    assert abs(np.mean([s["chrf"] for s in per_batch]) - one["chrf"]) > 1


def test_bad_input_is_named():
    with pytest.raises(DataError, match="2 predictions for 3 references"):
        bleu_chrf(["a", "b"], ["a", "b", "c"])
    with pytest.raises(DataError, match="references of example 1 are \\[\\]"):
        rouge_scores(["a", "b"], ["a", []])
    with pytest.raises(DataError, match="prediction 0 is a NoneType"):
        BleuChrfMetric().update([None], ["a"])
    with pytest.raises(DataError, match="not a string"):
        rouge_scores("a b", "a b")
    with pytest.raises(ConfigError, match="tokenize is 'moses'; expected one of .*'13a'"):
        BleuChrfMetric(tokenize="moses")
    with pytest.raises(ConfigError, match="smooth_method is 'add-one'"):
        BleuChrfMetric(smooth_method="add-one")
    with pytest.raises(ConfigError, match="word_order is 3"):
        BleuChrfMetric(word_order=3)


# -------------------------------------------------------------------------- two gloo ranks

RANK_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from lit_tasks.metrics.rouge import RougeMetric
    from lit_tasks.metrics.translation import BleuChrfMetric

    rank, port, data, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    case = json.load(open(data))
    preds, refs, shards = case["predictions"], case["references"], case["batches"][rank]
    metrics = [RougeMetric(), BleuChrfMetric(), BleuChrfMetric(tokenize="intl", word_order=2)]
    for batch in shards:
        for metric in metrics:
            metric.update([preds[i] for i in batch], [refs[i] for i in batch])
    results = [{k: v.item() for k, v in m.compute().items()} for m in metrics]  # synced over ranks
    json.dump({"rank": rank, "results": results}, open(f"{out}.{rank}", "w"))
    dist.destroy_process_group()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_with_uneven_shards_equal_one_process(tmp_path):
    """7 examples, rank r takes r::2 as UnpaddedDistributedSampler does (4 + 3), in batches of
    3: rank 0 updates twice ([0, 2, 4], [6]), rank 1 once ([1, 3, 5])."""
    shards = [list(range(len(PREDICTIONS)))[r::2] for r in range(2)]
    case = {"predictions": PREDICTIONS, "references": REFERENCES,
            "batches": [[s[i:i + 3] for i in range(0, len(s), 3)] for s in shards]}
    assert [len(b) for b in case["batches"]] == [2, 1]
    (tmp_path / "case.json").write_text(json.dumps(case))
    (tmp_path / "rank.py").write_text(RANK_SCRIPT)
    port, env = free_port(), {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "rank.py"), str(rank), str(port),
                               str(tmp_path / "case.json"), str(tmp_path / "out")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]

    expected = [direct_rouge(PREDICTIONS, REFERENCES), direct_bleu_chrf(PREDICTIONS, REFERENCES),
                direct_bleu_chrf(PREDICTIONS, REFERENCES, tokenize="intl", word_order=2)]
    for rank in range(2):
        rouge, bleu, bleu_intl = json.loads((tmp_path / f"out.{rank}").read_text())["results"]
        assert rouge == pytest.approx(expected[0], rel=1e-12), rank
        assert bleu == expected[1], rank
        assert bleu_intl == expected[2], rank
