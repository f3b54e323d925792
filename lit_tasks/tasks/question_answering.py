"""Extractive question answering: a BERT-family encoder scores each token as the start and end
of the answer span (Devlin et al. 2019, "BERT", Sec. 4.2-4.3); SQuAD exact match and F1."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lit_tasks.errors import ConfigError
from lit_tasks.metrics.squad import SquadScores, score_question
from lit_tasks.tasks.answer_spans import AnswerCollector, Question, decide, merge_questions, window_candidates
from lit_tasks.tasks.base import EVAL_STAGES, TaskModule

log = logging.getLogger(__name__)


def span_loss(start: torch.Tensor, end: torch.Tensor, start_positions: torch.Tensor,
              end_positions: torch.Tensor) -> torch.Tensor:
    """Mean of the start and end cross-entropies over each window's tokens (Devlin et al. 2019,
    Sec. 4.2). start, end: (B, T) logits; positions: (B,) token indices (0 = [CLS])."""
    return (F.cross_entropy(start, start_positions) + F.cross_entropy(end, end_positions)) / 2


class QuestionAnswering(TaskModule):
    """Find the answer to a question as a span of its context.

    The network is the zoo's text "question_answering" head (see TaskModule), e.g. `init_from`
    all-MiniLM-L6-v2, whose span head is then freshly initialised. The CLI links `init_from`
    to the DataModule's `preprocessor`, so the folder's tokenizer is used.

    Batches (lit_tasks.data.question_answering.QuestionAnsweringDataModule): one window of a
    question per row, {"input_ids", "attention_mask", "token_type_ids": (B, T) long,
    "start_positions", "end_positions": (B,) long (0 = [CLS]: no answer in this window),
    "offsets": (B, T, 2) long, "ids", "num_windows", "contexts", "answers"}.

    Loss: the mean of the start and end cross-entropies over each window's tokens. Evaluation
    pools all windows of a question (see `lit_tasks.tasks.answer_spans`) and scores the answer
    with SQuAD exact match and F1 in percent (`lit_tasks.metrics.squad`): val/exact_match,
    val/f1 (checkpoints are chosen by it) and, when a split has answerable and unanswerable
    questions, the has_answer_* / no_answer_* breakdown. Under data parallelism each question
    is decided once, on the process that saw all its windows; windows of a question left
    incomplete at the end of an epoch are gathered across processes and decided on rank 0.

    Args:
        n_best: start and end tokens considered per window (the top n_best of each).
        max_answer_length: the longest answer, in tokens.
        null_answers: SQuAD v2: a question may have no answer; it gets none when the [CLS]
            score beats the best span's score by more than `null_threshold`.
        null_threshold: see `null_answers` (higher: fewer "no answer" predictions).
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "text", "question_answering"
    monitor = ("val/f1", "max")

    def __init__(self, n_best: int = 20, max_answer_length: int = 30, null_answers: bool = False,
                 null_threshold: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if n_best < 1 or max_answer_length < 1:
            raise ConfigError(f"model.n_best ({n_best}) and model.max_answer_length ({max_answer_length}) must be >= 1")
        self.n_best, self.max_answer_length = n_best, max_answer_length
        self.null_answers, self.null_threshold = null_answers, null_threshold
        self.build_net()
        self.squad = nn.ModuleDict({s: SquadScores() for s in EVAL_STAGES})
        self.collectors = {s: AnswerCollector() for s in (*EVAL_STAGES, "predict")}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(start_logits, end_logits), each (B, T), padding positions set to the lowest value."""
        start, end = self.net(input_ids, attention_mask, token_type_ids)  # (B, T) each
        if attention_mask is not None:
            pad = attention_mask == 0
            start, end = start.masked_fill(pad, torch.finfo(start.dtype).min), end.masked_fill(pad, torch.finfo(end.dtype).min)
        return start, end

    def _logits(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        start, end = self._logits(batch)  # (B, T) each
        loss = span_loss(start, end, batch["start_positions"], batch["end_positions"])
        self.log_loss(stage, loss, start.shape[0])  # window-weighted
        if stage != "train":
            self._score(stage, self._collect(stage, batch, start, end))
        return loss

    def _collect(self, stage: str, batch: dict[str, Any], start: torch.Tensor, end: torch.Tensor) -> list[Question]:
        spans, null = window_candidates(start, end, batch["offsets"], self.n_best, self.max_answer_length)
        return self.collectors[stage].add(batch, spans, null)

    def _score(self, stage: str, questions: list[Question]) -> None:
        if not questions:
            return
        scored = [score_question(decide(q, self.null_answers, self.null_threshold)["answer"], q.answers or [])
                  for q in questions]
        self.squad[stage].update([em for em, _ in scored], [f for _, f in scored], [bool(q.answers) for q in questions])

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One row per question, once its last window is seen: {"id", "answer", "score", "start",
        "end"} (answer text and its characters [start, end) in the context; "" and nulls for no
        answer), plus "true_answers" when the data has answers."""
        start, end = self._logits(batch)
        rows = []
        for q in self._collect("predict", batch, start, end):
            row = decide(q, self.null_answers, self.null_threshold)
            if q.answers is not None:
                row["true_answers"] = q.answers
            rows.append(row)
        return rows

    # -- epoch ends: questions cut short, then the scores --------------------------------
    def _finish_pending(self, stage: str) -> None:
        """Decide the questions still missing windows: under DDP gathered from every process
        and decided on rank 0 (only with a sampler that splits questions or a batch limit)."""
        pending = self.collectors[stage].drain()
        if dist.is_available() and dist.is_initialized() and self.trainer.world_size > 1:
            gathered: list[list[Question] | None] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, pending)
            pending = merge_questions([q for part in gathered for q in part]) if self.global_rank == 0 else []
        incomplete = sum(q.seen < q.num_windows for q in pending)
        if incomplete and not self.trainer.sanity_checking:
            log.warning("%s: %d question(s) were scored on part of their windows (the evaluation was cut short, "
                        "e.g. by limit_%s_batches).", stage, incomplete, "val" if stage == "val" else stage)
        self._score(stage, pending)

    def end_epoch(self, stage: str) -> None:
        if stage == "train":
            return
        self._finish_pending(stage)
        scores = self.squad[stage].compute()  # summed over processes: the same on every rank
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()}, prog_bar=False, sync_dist=True)
        self.squad[stage].reset()

    def on_predict_epoch_end(self) -> None:
        left = self.collectors["predict"].drain()
        if left:
            log.warning("predict: %d question(s) were not written: the prediction was cut short before their last "
                        "window (limit_predict_batches?).", len(left))

    def task_metadata(self) -> dict[str, Any]:
        return {"n_best": self.n_best, "max_answer_length": self.max_answer_length,
                "null_answers": self.null_answers, "null_threshold": self.null_threshold}
