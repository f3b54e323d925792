"""Audio manifests, class folders and decoding for :mod:`lit_tasks.data.audio`.

Every check that can be done from headers happens at set-up and fails with a
:class:`BadAudioError` / :class:`DataError` that names the file, the row and the field at fault.

- **CSV / JSONL manifests** (by extension: ``.csv`` with a header, ``.jsonl``/``.ndjson``): one
  row per clip with a path column, a ``label`` (classification) or ``text`` (transcription)
  column (unlabelled audio: the path column only), and optionally ``duration`` in seconds
  (trusted when given, which saves reading every file header at set-up). Relative paths
  resolve against the manifest's folder.
- **class folders** (classification): ``root/<split>/<class name>/**/<audio file>``; for
  unlabelled audio any audio file under ``root/<split>``, recursively.

Decoding uses ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3), mixes down to mono
(mean over channels) and resamples with ``scipy.signal.resample_poly`` (up/down reduced by
their gcd); the result is float32. A clip whose samples are NaN or infinite (float WAV/FLAC can
hold them), or whose header gives a sampling rate outside 1 kHz .. 768 kHz (a corrupt header:
resampling it would need gigabytes), is a :class:`BadAudioError`.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from lit_tasks.data.preprocessor import read_preprocessor_json
from lit_tasks.data.labels import sort_labels
from lit_tasks.data.tables import preview, read_rows, row_name, table_kind
from lit_tasks.errors import DataError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3"})
# Streaming writers (espeak-ng --stdout, sox -) put a placeholder in the WAV data size.
_WAV_SIZE_PLACEHOLDERS = 0x7FFF0000
# Header sampling rates we decode; outside them the header is corrupt (a rate of 1 Hz would
# resample a 1 s clip into 16000 s, one of 2**31 Hz needs a 320 GiB filter).
SAMPLING_RATES = (1000, 768_000)


class BadAudioError(DataError):
    """An audio file that cannot be decoded, is truncated or holds no samples; names the file
    (and the manifest row). A DataError, so the CLI shows it as one paragraph."""


@dataclass(frozen=True)
class AudioRecord:
    """One clip of a split.

    path:     the audio file
    label:    class index into ``label_names``; -1 for transcription or when unknown (predict)
    text:     transcript ("" for classification or when unknown)
    where:    how messages name it, e.g. ``/data/val.csv row 7 (clips/7.flac)``
    duration: seconds, from the manifest or the file header
    """

    path: str
    label: int
    text: str
    where: str
    duration: float


@dataclass(frozen=True)
class TableRow:
    number: int  # 1-based data row (CSV: header not counted) or JSONL line number
    path: str  # resolved against the manifest's folder
    value: str  # label or transcript ("" when not read)
    duration: float | None
    where: str


# ------------------------------------------------------------------------------ manifests


def read_manifest(file: str | Path, path_column: str, value_column: str | None, kind_of_value: str) -> list[TableRow]:
    """Parse a CSV/JSONL manifest. ``value_column`` is the label or text column (None: paths
    only); ``kind_of_value`` names it in messages ("class label" or "transcript")."""
    file = Path(file).expanduser()
    kind = table_kind(file)
    wanted = [path_column] + ([value_column] if value_column else [])
    rows: list[TableRow] = []

    def check(number: int, record: dict[str, Any]) -> None:
        row = f"{file} {row_name(kind, number)}"
        values = {}
        for column in wanted:
            value = record.get(column)
            if value is None or (isinstance(value, str) and not value.strip()):
                have = "is missing" if value is None else "is empty"
                raise DataError(
                    f"{row}: the {column!r} field {have}; every row needs an audio path in {path_column!r}"
                    + (f" and a {kind_of_value} in {value_column!r}" if value_column else "")
                    + f". Row fields: {preview(sorted(k for k in record if k is not None))}."
                )
            # a class label may be an integer; a path or a transcript is a string
            allowed = (str, int) if column != path_column and kind_of_value == "class label" else str
            if isinstance(value, bool) or not isinstance(value, allowed):
                raise DataError(
                    f"{row}: the {column!r} field is {value!r} ({type(value).__name__}); expected "
                    + ("a path string." if column == path_column else
                       f"a {kind_of_value} ({'string or integer' if allowed != str else 'string'}).")
                )
            values[column] = " ".join(str(value).split())  # trim, collapse inner whitespace
        duration = record.get("duration")
        if duration in (None, ""):
            duration = None
        else:
            try:
                duration = float(duration)
            except (TypeError, ValueError):
                duration = math.nan
            if not (math.isfinite(duration) and duration > 0):
                raise DataError(
                    f"{row}: the 'duration' field is {record.get('duration')!r}; expected seconds > 0 (or leave it "
                    "out)."
                )
        path = Path(str(record[path_column]).strip()).expanduser()
        path = path if path.is_absolute() else file.parent / path
        value = values.get(value_column, "") if value_column else ""
        rows.append(TableRow(number, str(path), value, duration, f"{row} ({path})"))

    for number, record in read_rows(file, kind, wanted, "Set path_column / label_column / text_column to the names used in the file."):
        check(number, record)
    if not rows:
        raise DataError(f"{file}: no rows; expected one row per clip with columns {preview(wanted)}.")
    return rows


def manifest_labels(rows: list[TableRow]) -> list[str]:
    return sort_labels({r.value for r in rows})


# ---------------------------------------------------------------------------- class folders


def folder_classes(root: str | Path, split: str) -> list[str]:
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DataError(
            f"Audio folder layout: the {split} split folder {split_dir} does not exist. Expected "
            f"{Path(root)}/{{train,val,test}}/<class name>/<audio files>."
        )
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"Audio folder layout: {split_dir} has no class sub-folders (one folder per class).")
    return classes


def folder_rows(root: str | Path, split: str, label_names: list[str]) -> list[TableRow]:
    """Rows of ``root/<split>``; its class folders must be exactly the train classes. Files
    without an audio extension are counted and named in a warning."""
    split_dir = Path(root) / split
    classes = folder_classes(root, split)
    if classes != label_names:
        extra, missing = sorted(set(classes) - set(label_names)), sorted(set(label_names) - set(classes))
        raise DataError(
            f"Audio folder layout: {split_dir} has class folders {preview(classes)}, but train has "
            f"{preview(label_names)} (extra: {preview(extra) or 'none'}; missing: {preview(missing) or 'none'}). "
            "A class unseen in train cannot be predicted; every split needs the train classes."
        )
    rows, ignored = [], []
    for name in classes:
        found, skipped = _audio_files(split_dir / name)
        if not found:
            raise DataError(
                f"Audio folder layout: the class folder {split_dir / name} has no audio files (looked for "
                f"{', '.join(sorted(AUDIO_EXTENSIONS))}, recursively). Add clips or remove the class from every split."
            )
        rows += [TableRow(len(rows) + i + 1, full, name, None, full) for i, full in enumerate(found)]
        ignored += skipped
    if ignored:
        log.warning("%s: ignored %d file(s) without an audio extension: %s", split_dir, len(ignored), preview(ignored))
    return rows


def unlabelled_folder_rows(root: str | Path, split: str) -> list[TableRow]:
    """Rows of every audio file under ``root/<split>``, recursively (sub-folders, e.g. class
    folders, are allowed and their names ignored); for unlabelled audio (pretraining)."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DataError(
            f"Audio folder layout: the {split} split folder {split_dir} does not exist. Expected "
            f"{Path(root)}/{{train,val,test}}/**/<audio files> (sub-folders allowed)."
        )
    found, ignored = _audio_files(split_dir)
    if not found:
        raise DataError(
            f"Audio folder layout: {split_dir} has no audio files (looked for {', '.join(sorted(AUDIO_EXTENSIONS))}, "
            "recursively)."
        )
    if ignored:
        log.warning("%s: ignored %d file(s) without an audio extension: %s", split_dir, len(ignored), preview(ignored))
    return [TableRow(i + 1, full, "", None, full) for i, full in enumerate(found)]


def _audio_files(folder: Path) -> tuple[list[str], list[str]]:
    """(audio files, other files) under `folder`, recursively, sorted; hidden entries skipped."""
    found, ignored = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            full = os.path.join(dirpath, fname)
            (found if os.path.splitext(fname)[1].lower() in AUDIO_EXTENSIONS else ignored).append(full)
    return found, ignored


# --------------------------------------------------------------------------------- decoding


def _truncated_wav(info: Any) -> str | None:
    """libsndfile reads a truncated WAV without error; its header log says "data : N (should be M)"."""
    m = re.search(r"^data : (\d+) \(should be (\d+)\)", getattr(info, "extra_info", "") or "", re.M)
    if m and int(m.group(2)) < int(m.group(1)) < _WAV_SIZE_PLACEHOLDERS:
        return f"the header announces {m.group(1)} bytes of audio, the file holds {m.group(2)}"
    return None


def audio_duration(path: str, where: str) -> float:
    """Seconds, from the file header; raises BadAudioError for unreadable, truncated or empty files."""
    if not os.path.isfile(path):
        raise BadAudioError(
            f"{where}: the audio file does not exist (relative paths resolve against the manifest's folder)."
        )
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise BadAudioError(
            f"{where}: cannot decode the audio file ({_sf_reason(e)}); is it corrupt, truncated or not audio?"
        ) from None
    problem = _truncated_wav(info)
    if problem:
        raise BadAudioError(f"{where}: the audio file is truncated ({problem}).")
    if info.frames <= 0 or info.samplerate <= 0:
        raise BadAudioError(f"{where}: the audio file holds no samples (0 frames).")
    _check_rate(info.samplerate, where)
    return info.frames / info.samplerate


def _check_rate(rate: int, where: str) -> None:
    low, high = SAMPLING_RATES
    if not low <= rate <= high:
        raise BadAudioError(
            f"{where}: the header gives a sampling rate of {rate} Hz; expected {low} to {high} Hz, so the header "
            "is corrupt or the file is not audio."
        )


def _sf_reason(e: BaseException) -> str:
    text = str(e)
    return text.split(": ", 1)[1] if text.startswith("Error opening") and ": " in text else text


def load_audio(path: str, sampling_rate: int, where: str) -> np.ndarray:
    """Decode ``path`` to a mono float32 array at ``sampling_rate``; BadAudioError names ``where``."""
    if not os.path.isfile(path):
        raise BadAudioError(f"{where}: the audio file does not exist.")
    try:
        with sf.SoundFile(path) as f:
            problem = _truncated_wav(f) if f.format == "WAV" else None
            expected, sr = f.frames, f.samplerate
            _check_rate(sr, where)
            data = f.read(dtype="float32", always_2d=True)  # (frames, channels)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise BadAudioError(
            f"{where}: cannot decode the audio file ({_sf_reason(e)}); is it corrupt, truncated or not audio?"
        ) from None
    if problem:
        raise BadAudioError(f"{where}: the audio file is truncated ({problem}).")
    if len(data) == 0:
        raise BadAudioError(f"{where}: the audio file holds no samples (0 frames).")
    if len(data) < expected:
        raise BadAudioError(
            f"{where}: the audio file is truncated (header says {expected} frames, decoded {len(data)})."
        )
    mono = data.mean(axis=1, dtype=np.float64)  # (frames,); float64: two channels near the float32 limit add up
    if sr != sampling_rate:
        g = math.gcd(sampling_rate, sr)
        mono = resample_poly(mono, sampling_rate // g, sr // g)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise BadAudioError(f"{where}: the audio holds NaN or infinite samples (or samples beyond the float32 range).")
    return mono


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """``x`` played ``factor`` times as fast (tempo and pitch together, the "speed perturbation" of
    Ko et al. 2015): resampled to ``len(x) / factor`` samples, the ratio rounded to 1/100."""
    down = max(1, round(100 * factor))
    g = math.gcd(100, down)
    return resample_poly(x, 100 // g, down // g).astype(np.float32)


def zero_mean_unit_var(x: np.ndarray) -> np.ndarray:
    """Per-utterance normalisation as wav2vec2 feature extractors do: (x - mean) / sqrt(var + 1e-7),
    computed in float64 (the variance of float32 samples beyond about 1e19 overflows float32)."""
    x = x.astype(np.float64)
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)


# ---------------------------------------------------------------------------- preprocessor


def read_preprocessor(path: str) -> dict[str, Any]:
    """``sampling_rate`` and ``normalize`` (from ``do_normalize``) of an HF
    ``preprocessor_config.json``; ``path`` is the JSON, a checkpoint folder or a file in one.
    A folder without the JSON gives a warning and {}."""
    cfg, file = read_preprocessor_json(path, "sampling_rate/normalize as given")
    out: dict[str, Any] = {}
    if "sampling_rate" in cfg:
        sr = cfg["sampling_rate"]
        if isinstance(sr, bool) or not isinstance(sr, int) or sr <= 0:
            raise DataError(f"preprocessor: {file} field 'sampling_rate' is {sr!r}; expected a positive integer (Hz).")
        out["sampling_rate"] = sr
    if "do_normalize" in cfg:
        if not isinstance(cfg["do_normalize"], bool):
            raise DataError(
                f"preprocessor: {file} field 'do_normalize' is {cfg['do_normalize']!r}; expected true or false."
            )
        out["normalize"] = cfg["do_normalize"]
    return out
