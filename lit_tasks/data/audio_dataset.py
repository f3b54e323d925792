"""The audio Dataset and its collate, apart from the DataModule.

This module imports no Lightning: DataLoader workers started by spawn or a fork server (DDP
ranks) import it to unpickle the dataset, and Lightning would add seconds to each start
(benchmarks/loaders.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_tasks.data import audio_sources as src
from lit_tasks.data.audio_sources import AudioRecord, BadAudioError
from lit_tasks.data.samplers import sample_generator

log = logging.getLogger(__name__)

IGNORE = -100  # label ids after a transcript's end


class SkippedAudio(NamedTuple):
    """What :class:`AudioDataset` returns for an undecodable clip when ``skip_bad_audio``."""

    path: str
    reason: str


class AudioDataset(Dataset):
    """Records -> ``{"input_values": (T,) float32, "labels": int (a class) or list[int] (the
    transcript's ids, by ``encode``), "text": str, "paths": str}``.

    In ``train``, ``speed`` = (low, high) plays each clip at a random speed factor in that range
    (:func:`~lit_tasks.data.audio_sources.change_speed`); then ``crop`` (samples) > 0 cuts longer
    clips to a random window (the centre one outside train). Both draw from
    :func:`~lit_tasks.data.samplers.sample_generator`, so they depend on (seed, epoch, index) only. With ``skip_bad_audio`` a clip that cannot be decoded gives a
    :class:`SkippedAudio` (and a warning naming it) instead of raising :class:`BadAudioError`.
    """

    def __init__(self, records: list[AudioRecord], sampling_rate: int, normalize: bool,
                 crop: int = 0, train: bool = False, skip_bad_audio: bool = False,
                 speed: tuple[float, float] | None = None, encode: Callable[[str], list[int]] | None = None):
        self.records, self.sampling_rate, self.normalize = records, sampling_rate, normalize
        self.crop, self.train, self.skip_bad_audio, self.speed = crop, train, skip_bad_audio, speed
        self.encode = encode
        self._decoded: list[np.ndarray | BadAudioError] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def lengths(self) -> list[int]:
        """Approximate lengths in samples (from durations), for length bucketing."""
        n = [max(1, round(r.duration * self.sampling_rate)) for r in self.records]
        return [min(x, self.crop) for x in n] if self.crop else n

    def cache(self) -> int:
        """Decode and resample every clip now and keep it, so that no epoch decodes again
        (DataLoader workers started later inherit the clips); returns the bytes kept."""
        decoded: list[np.ndarray | BadAudioError] = []
        for record in self.records:
            try:
                decoded.append(src.load_audio(record.path, self.sampling_rate, record.where))
            except BadAudioError as e:  # raised (or skipped) when the clip is asked for, as without a cache
                decoded.append(e)
        self._decoded = decoded
        return sum(x.nbytes for x in decoded if isinstance(x, np.ndarray))

    def _load(self, i: int, record: AudioRecord) -> np.ndarray:
        if self._decoded is None:
            return src.load_audio(record.path, self.sampling_rate, record.where)
        x = self._decoded[i]
        if isinstance(x, BadAudioError):
            raise x
        return x

    def __getitem__(self, i: int) -> dict[str, Any] | SkippedAudio:
        record = self.records[i]
        try:
            x = self._samples(i, record)
        except BadAudioError as e:
            if not self.skip_bad_audio:
                raise
            log.warning("Skipping audio (skip_bad_audio=True): %s", e)
            return SkippedAudio(record.path, str(e))
        labels = self.encode(record.text) if self.encode is not None else record.label
        return {"input_values": torch.from_numpy(x), "labels": labels, "text": record.text, "paths": record.path}

    def _samples(self, i: int, record: AudioRecord) -> np.ndarray:
        x = self._load(i, record)
        generator = sample_generator(i)
        if self.train and self.speed:
            low, high = self.speed
            x = src.change_speed(x, low + (high - low) * torch.rand((), generator=generator).item())
            if not np.isfinite(x).all():  # samples near the float32 limit can overshoot it when resampled
                raise BadAudioError(f"{record.where}: the audio holds samples beyond the float32 range once "
                                    "speed-perturbed (resampled).")
        if self.crop and len(x) > self.crop:
            extra = len(x) - self.crop
            start = int(torch.randint(0, extra + 1, (), generator=generator).item()) if self.train else extra // 2
            x = x[start:start + self.crop]
        if self.normalize:
            x = src.zero_mean_unit_var(x)
        return x


class AudioCollate:
    """Zero-pad samples into the batch dict; drop :class:`SkippedAudio` items and list their
    paths under ``"skipped"``. ``task`` picks ``"labels"`` (classification), ``"text"`` and
    ``"labels"`` (transcription) or neither (unlabelled)."""

    def __init__(self, task: str):
        self.task = task

    def __call__(self, items: list[dict[str, Any] | SkippedAudio]) -> dict[str, Any]:
        good = [x for x in items if isinstance(x, dict)]
        lengths = torch.tensor([len(x["input_values"]) for x in good], dtype=torch.long)  # (B,)
        t = int(lengths.max()) if len(good) else 0
        input_values = torch.zeros(len(good), t, dtype=torch.float32)  # (B, T)
        for row, x in enumerate(good):
            input_values[row, : len(x["input_values"])] = x["input_values"]
        batch = {
            "input_values": input_values,
            "attention_mask": (torch.arange(t)[None, :] < lengths[:, None]).long(),  # (B, T) 1 = sample
            "lengths": lengths,
            "paths": [x["paths"] for x in good],
            "skipped": [x.path for x in items if not isinstance(x, dict)],
        }
        if self.task == "classification":
            batch["labels"] = torch.tensor([x["labels"] for x in good], dtype=torch.long)  # (B,)
        elif self.task == "transcription":
            batch["text"] = [x["text"] for x in good]
            ids = [torch.tensor(x["labels"] if isinstance(x["labels"], list) else [], dtype=torch.long) for x in good]
            batch["labels"] = (torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=IGNORE) if ids
                               else torch.zeros(0, 0, dtype=torch.long))  # (B, U)
        return batch
