"""Turning CTC frame scores into label sequences: greedy (best path) and prefix beam search.

Both take one utterance's (T, V) log-probabilities over its real frames and return token ids
with repeats collapsed and blanks removed (Graves et al. 2006, Sec. 3: the map B).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def collapse(path: list[int], blank: int) -> tuple[int, ...]:
    """B: merge runs of the same symbol, then drop blanks ("aa-ab" -> "aab")."""
    out, previous = [], None
    for symbol in path:
        if symbol != previous and symbol != blank:
            out.append(symbol)
        previous = symbol
    return tuple(out)


def greedy_decode(log_probs: Tensor, blank: int) -> tuple[int, ...]:
    """Best path decoding: the most likely symbol of every frame, then `collapse`. (T, V) -> ids."""
    return collapse(log_probs.argmax(-1).tolist(), blank)


def prefix_beam_search(log_probs: Tensor, blank: int, beam_width: int = 8) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search without a language model (Hannun et al. 2014, "First-Pass Large
    Vocabulary Continuous Speech Recognition using Bi-Directional Recurrent DNNs", Algorithm 1;
    Graves 2012, Sec. 7.5 "prefix search decoding").

    A beam holds label prefixes with two log-probabilities: of all alignments of the frames so
    far that yield the prefix and end in a blank (p_b), or in its last symbol (p_nb). Each frame
    extends every prefix by blank, by a repeat of its last symbol (which stays the same prefix
    unless a blank came between) or by a new symbol, merges the alignments reaching the same
    prefix, and keeps the `beam_width` prefixes of highest p_b + p_nb. The score of a finished
    prefix is log P(prefix | audio) summed over its alignments (what exp(-CTC loss) gives),
    restricted to the alignments the beam kept, so it is at most the exact value.

    Per frame only the `beam_width` most likely symbols (and the blank) are tried as extensions.

    log_probs: (T, V) log-softmax over the real frames of one utterance.
    Returns [(ids, log score)] for the final beam, best first.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width is {beam_width}; expected >= 1")
    lp = log_probs.detach().float().cpu()
    k = min(beam_width, lp.shape[-1])
    top = lp.topk(k, dim=-1).indices.tolist()  # (T, k)
    rows = lp.tolist()
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for t, row in enumerate(rows):
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix: tuple[int, ...], slot: int, value: float) -> None:
            entry = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
            entry[slot] = _logaddexp(entry[slot], value)

        for prefix, (p_b, p_nb) in beams.items():
            total = _logaddexp(p_b, p_nb)
            add(prefix, 0, total + row[blank])
            last = prefix[-1] if prefix else None
            for symbol in top[t]:
                if symbol == blank:
                    continue
                p = row[symbol]
                if symbol == last:
                    add(prefix, 1, p_nb + p)  # "a" + "a" stays "a"
                    add(prefix + (symbol,), 1, p_b + p)  # "a-" + "a" is "aa"
                else:
                    add(prefix + (symbol,), 1, total + p)
        ranked = sorted(nxt.items(), key=lambda item: _logaddexp(*item[1]), reverse=True)
        beams = {prefix: (p_b, p_nb) for prefix, (p_b, p_nb) in ranked[:beam_width]}
    return [(prefix, _logaddexp(p_b, p_nb)) for prefix, (p_b, p_nb) in beams.items()]


def ctc_log_likelihood(log_probs: Tensor, ids: tuple[int, ...], blank: int) -> float:
    """log P(ids | audio): the sum over all alignments (the negative CTC loss). (T, V) log-probs."""
    targets = torch.tensor([ids], dtype=torch.long) if ids else torch.zeros(1, 0, dtype=torch.long)
    loss = torch.nn.functional.ctc_loss(log_probs[:, None].float(), targets, torch.tensor([log_probs.shape[0]]),
                                        torch.tensor([len(ids)]), blank=blank, reduction="sum")
    return -loss.item()
