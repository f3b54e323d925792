"""The decoding loops: greedy or sampled (`sample`) and beam search (`beam_search`).

Both take the expanded batch (each prompt repeated per beam or per returned sequence) in a
token buffer `tokens` (N, P + max_new_tokens) that holds the left-padded prompts in its first P
columns and the fill id after them, and return the finished sequences with the prompt.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_tasks.errors import ConfigError
from lit_tasks.generation.config import GenerationConfig, shown
from lit_tasks.generation.decoder import Stepper
from lit_tasks.generation.processors import process_scores
from lit_tasks.generation.stopping import StopCriteria

# The score of a hypothesis that must not be chosen; finite, so that sums and ranks stay defined
# (HF's constant: candidates ranked below it are picked only when nothing else is left).
EXCLUDED = 1e9


def _check_vocab(config: GenerationConfig, vocab: int) -> None:
    """A ConfigError naming the first option whose ids fall outside the model's `vocab` tokens."""
    for option in ("eos_token_id", "forced_bos_token_id", "forced_eos_token_id"):
        value = getattr(config, option)
        ids = () if value is None else (value,) if isinstance(value, int) else value
        bad = [i for i in ids if i >= vocab]
        if bad:
            raise ConfigError(f"generation option {option}={shown(value)!r}: ids {bad} are outside the "
                              f"model's vocabulary of {vocab} tokens")


def sample(step: Stepper, tokens: Tensor, counted: Tensor, prompt_len: int, config: GenerationConfig,
           stop: StopCriteria, generator: torch.Generator | None) -> Tensor:
    """Greedy decoding (the best-scoring token) or sampling (`config.do_sample`: a draw from the
    softmax of the processed scores, with `generator`). A row is finished by `stop`; after that it
    gets the fill id. Stops when every row is finished or after max_new_tokens steps.
    Returns (N, P + steps)."""
    N, total = tokens.shape
    unfinished = torch.ones(N, dtype=torch.bool, device=tokens.device)
    for t in range(prompt_len, total):
        logits = step.logits(tokens[:, :t])  # (N, V)
        if t == prompt_len:
            _check_vocab(config, logits.shape[-1])
        scores = process_scores(logits, tokens[:, :t], counted[:, :t], t - prompt_len, config)
        if config.do_sample:
            chosen = torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]  # (N,)
        else:
            chosen = scores.argmax(-1)  # (N,)
        if config.fill_id is not None:
            chosen = torch.where(unfinished, chosen, config.fill_id)
        tokens[:, t] = chosen
        unfinished &= ~stop(tokens[:, :t + 1], unfinished)
        if not unfinished.any():
            return tokens[:, :t + 1]
    return tokens


def _rows(x: Tensor, index: Tensor) -> Tensor:
    """x (B, n, ...) -> (B, k, ...): the entries `index` (B, k) of each row."""
    return x.gather(1, index.view(*index.shape, *(1,) * (x.ndim - 2)).expand(*index.shape, *x.shape[2:]))


def beam_search(step: Stepper, tokens: Tensor, counted: Tensor, prompt_len: int, config: GenerationConfig,
                stop: StopCriteria, generator: torch.Generator | None) -> Tensor:
    """Beam search with HF's semantics, `config.num_beams` rows per prompt in `tokens`.

    Every step extends each running beam by every token: a candidate scores its beam's sum of
    processed log-probabilities plus the new token's. The best K = max(2, 1 + #eos) * num_beams
    candidates per prompt are kept (drawn without replacement from the softmax of their scores
    when `do_sample`), so that num_beams of them remain after the finished ones leave:
    - a candidate that `stop` finishes (eos, a stop string, the length limit) and ranks among the
      first num_beams becomes a finished hypothesis scored sum / n ** length_penalty, n its new
      tokens; the num_beams best finished hypotheses are kept per prompt;
    - the num_beams best unfinished candidates become the running beams (their cache rows are
      selected with `Stepper.reorder`).
    A prompt takes no new finished hypotheses once it is done: with early_stopping=True when it
    holds num_beams of them; otherwise when the best running beam, scored as if it ended now
    (early_stopping False or "never" with length_penalty <= 0) or at max_new_tokens ("never" with
    length_penalty > 0), does not beat the worst finished one. The loop ends when every prompt is
    done or every candidate is finished. Returns the `num_return_sequences` best finished
    hypotheses per prompt, best first, (B * num_return_sequences, P + longest), filled after eos.
    """
    nb, lp = config.num_beams, config.length_penalty
    N, total = tokens.shape
    B, device = N // nb, tokens.device
    K = max(2, 1 + len(config.eos_ids)) * nb
    min_keep = len(config.eos_ids) + 1 if config.eos_ids else 2  # sampling filters keep a non-eos token
    running = tokens.view(B, nb, total)
    running_scores = torch.zeros(B, nb, device=device)
    running_scores[:, 1:] = -EXCLUDED  # at first all beams are the same: expand only the first
    done = running.clone()  # (B, nb, total) the finished hypotheses, best first
    done_scores = torch.full((B, nb), -EXCLUDED, device=device)
    done_flags = torch.zeros(B, nb, dtype=torch.bool, device=device)  # slots that hold a finished hypothesis
    done_lengths = torch.zeros(B, nb, dtype=torch.long, device=device)  # their new tokens
    open_ = torch.ones(B, dtype=torch.bool, device=device)  # prompts that may still take finished hypotheses
    first_ranks = torch.arange(K, device=device) < nb  # (K,) candidates ranked among the first num_beams
    offsets = torch.arange(B, device=device)[:, None] * nb  # (B, 1) first row of each prompt's beams
    for t in range(prompt_len, total):
        flat = running.reshape(N, total)[:, :t]
        logits = step.logits(flat)  # (N, V)
        if t == prompt_len:
            _check_vocab(config, logits.shape[-1])
        logp = process_scores(F.log_softmax(logits, -1), flat, counted[:, :t], t - prompt_len, config, min_keep)
        V = logp.shape[-1]
        totals = (logp.view(B, nb, V) + running_scores[..., None]).view(B, nb * V)
        if config.do_sample:
            picked = torch.multinomial(totals.softmax(-1), K, generator=generator)  # (B, K) without replacement
            cand_scores, order = totals.gather(1, picked).sort(-1, descending=True)
            picked = picked.gather(1, order)
        else:
            cand_scores, picked = totals.topk(K, dim=-1)  # (B, K)
        source = picked // V  # (B, K) the beam each candidate extends
        cand = _rows(running, source)  # (B, K, total)
        cand[:, :, t] = picked % V
        finished = stop(cand.view(B * K, total)[:, :t + 1]).view(B, K)

        # the num_beams best unfinished candidates run on
        alive_scores = cand_scores - EXCLUDED * finished.float()
        keep = alive_scores.topk(nb, dim=-1).indices  # (B, nb)
        running, running_scores = _rows(cand, keep), alive_scores.gather(1, keep)
        step.reorder((source.gather(1, keep) + offsets).view(-1))

        # finished candidates among the first num_beams join the finished hypotheses if good enough
        n_new = t + 1 - prompt_len
        accepted = finished & first_ranks
        final = cand_scores / n_new ** lp
        final = final - EXCLUDED * (done_flags.all(-1, keepdim=True) & (config.early_stopping is True)).float()
        final = final - EXCLUDED * (~open_[:, None]).float()
        final = final - EXCLUDED * (~accepted).float()
        merged_scores = torch.cat([done_scores, final], 1)  # (B, nb + K): the kept ones first, as HF ranks ties
        best = merged_scores.topk(nb, dim=-1).indices  # (B, nb)
        done, done_scores = _rows(torch.cat([done, cand], 1), best), merged_scores.gather(1, best)
        done_flags = torch.cat([done_flags, accepted], 1).gather(1, best)
        done_lengths = torch.cat([done_lengths, done_lengths.new_full((B, K), n_new)], 1).gather(1, best)

        # can the best running beam still beat the worst finished hypothesis?
        n_best = config.max_new_tokens if config.early_stopping == "never" and lp > 0 else n_new
        best_running = running_scores[:, :1] / n_best ** lp  # (B, 1)
        worst_done = torch.where(done_flags, done_scores.min(-1, keepdim=True).values, -EXCLUDED)  # (B, nb)
        open_ &= (best_running > worst_done).any(-1)
        if not open_.any() or (config.early_stopping is True and done_flags.all()) or finished.all():
            break
    nrs = config.num_return_sequences
    length = prompt_len + int(done_lengths[:, :nrs].max())
    return done[:, :nrs, :length].reshape(B * nrs, length)
