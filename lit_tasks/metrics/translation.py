"""Corpus BLEU (Papineni et al. 2002) and chrF (Popović 2015) as sacreBLEU computes them, exact
under DDP.

Both are corpus-level: n-gram counts are summed over all segments and the score is computed
once from the sums, never averaged over sentences or batches. sacreBLEU itself works that way:
per segment it extracts a vector of integer statistics, sums the vectors and scores the sum.
The state here is exactly that sum (int64), summed again over processes, and the score comes
from sacreBLEU's own ``_compute_score_from_stats`` of its ``BLEU`` / ``CHRF`` objects, so the
result equals ``sacrebleu.corpus_bleu`` / ``corpus_chrf`` on all segments at once, bit for
bit, for every option below (the statistics of a segment never depend on other segments).

- BLEU statistics: [hypothesis length, closest reference length, matches for n = 1..4,
  hypothesis n-grams for n = 1..4] after sacreBLEU's tokenization (default "13a", the
  mteval-v13a tokenizer of WMT); smoothing ("exp" by default) applies to the sums.
- chrF statistics: [hypothesis, reference, matched] n-gram counts per character order 1..6
  (whitespace removed, sacreBLEU's ``corpus_chrf`` default) and, for ``word_order`` = 2
  (chrF++), word orders 1..2; beta = 2. With several references a segment uses the reference
  of highest segment-level chrF.

Scores are in percent (0-100), as sacreBLEU reports them. The ``_extract_corpus_statistics`` /
``_compute_score_from_stats`` methods are sacreBLEU 2.x internals (its significance tests use
them); pyproject pins ``sacrebleu<3`` for that reason, and the tests compare with the public
``corpus_bleu`` / ``corpus_chrf``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from sacrebleu.metrics import BLEU, CHRF
from torchmetrics import Metric

from lit_tasks.errors import ConfigError
from lit_tasks.metrics.rouge import References, reference_lists


def reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """sacreBLEU's layout: stream k holds every example's k-th reference, None where an example
    has fewer than k + 1 references."""
    depth = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(depth)]


def build_bleu(tokenize: str, lowercase: bool, smooth_method: str) -> BLEU:
    """sacreBLEU's BLEU object, with a ConfigError naming the option for a bad value."""
    if tokenize not in BLEU.TOKENIZERS:
        raise ConfigError(f"BLEU: tokenize is {tokenize!r}; expected one of {sorted(BLEU.TOKENIZERS)}")
    if smooth_method not in BLEU.SMOOTH_DEFAULTS:
        raise ConfigError(f"BLEU: smooth_method is {smooth_method!r}; expected one of {sorted(BLEU.SMOOTH_DEFAULTS)}")
    try:
        return BLEU(tokenize=tokenize, lowercase=lowercase, smooth_method=smooth_method)
    except (ImportError, OSError) as err:  # mecab / sentencepiece tokenizers need extra packages and files
        raise ConfigError(f"BLEU: tokenize={tokenize!r} is not usable here: {err}") from err


def segment_statistics(metric: BLEU | CHRF, hypotheses: Sequence[str], references: list[list[str]]) -> torch.Tensor:
    """(S,) int64: the sum of sacreBLEU's per-segment statistics over the given segments."""
    stats = metric._extract_corpus_statistics(list(hypotheses), reference_streams(references))
    return torch.tensor(stats, dtype=torch.long).sum(0)


class BleuChrfMetric(Metric):
    """Corpus BLEU and chrF in percent over all segments seen (module docstring).

    ``update(preds, target)``: ``preds`` one hypothesis string per segment, ``target`` per
    segment a reference string or a list of references (their number may vary). ``compute()``
    -> {"bleu", "chrf"}, float64 scalars ("chrf" is chrF++ when ``word_order=2``).

    tokenize, lowercase, smooth_method: sacreBLEU's BLEU options (its defaults);
    word_order: chrF's word n-gram order (0: chrF, 2: chrF++).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, tokenize: str = "13a", lowercase: bool = False, smooth_method: str = "exp",
                 word_order: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        if word_order not in (0, 1, 2):
            raise ConfigError(f"chrF: word_order is {word_order!r}; expected 0 (chrF), 1 or 2 (chrF++)")
        self.bleu = build_bleu(tokenize, lowercase, smooth_method)
        self.chrf = CHRF(word_order=word_order)
        bleu_size = 2 + 2 * self.bleu.max_ngram_order  # lengths, matches, totals
        chrf_size = 3 * (self.chrf.char_order + word_order)  # (hyp, ref, match) per order
        self.add_state("bleu_stats", torch.zeros(bleu_size, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("chrf_stats", torch.zeros(chrf_size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], target: References) -> None:
        refs = reference_lists(preds, target, "BLEU/chrF")
        if not refs:
            return
        self.bleu_stats += segment_statistics(self.bleu, preds, refs).to(self.bleu_stats.device)
        self.chrf_stats += segment_statistics(self.chrf, preds, refs).to(self.chrf_stats.device)

    def compute(self) -> dict[str, torch.Tensor]:
        bleu = self.bleu._compute_score_from_stats(self.bleu_stats.tolist()).score
        chrf = self.chrf._compute_score_from_stats(self.chrf_stats.tolist()).score
        device = self.bleu_stats.device
        return {"bleu": torch.tensor(bleu, dtype=torch.float64, device=device),
                "chrf": torch.tensor(chrf, dtype=torch.float64, device=device)}


def bleu_chrf(predictions: list[str], references: References, tokenize: str = "13a",
              word_order: int = 0) -> dict[str, float]:
    """{"bleu", "chrf"}: corpus BLEU and chrF in percent (one process; module docstring)."""
    metric = BleuChrfMetric(tokenize=tokenize, word_order=word_order)
    metric.update(predictions, references)
    return {k: v.item() for k, v in metric.compute().items()}
