"""AudioDataModule: audio classification, transcription or unlabelled (pretraining) data from
manifests or folders."""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Literal

from torch.utils.data import DataLoader

from lit_tasks.data import audio_sources as src
from lit_tasks.data.audio_dataset import AudioCollate, AudioDataset
from lit_tasks.data.audio_sources import AudioRecord, BadAudioError, TableRow
from lit_tasks.data.base import SplitDataModule
from lit_tasks.data.samplers import distributed_eval_sampler, split_loader
from lit_tasks.data.transcripts import OOV_MODES, TranscriptTargets, given_vocab
from lit_tasks.errors import DataError
from lit_tasks.text.char_vocab import CharVocab, TextNormalizer

log = logging.getLogger(__name__)

class AudioDataModule(SplitDataModule):
    """Audio classification, transcription or unlabelled data, yielding model-agnostic batches.

    Sources: manifests (``train_file`` / ``val_file`` / ``test_file`` / ``predict_file``) or a
    folder layout (``root``); what a row holds depends on ``task``.

    Every clip is decoded with soundfile, mixed down to mono, resampled to ``sampling_rate``
    (``scipy.signal.resample_poly``) and, with ``normalize``, scaled to zero mean and unit
    variance per utterance.

    Batches (train, val, test and predict alike)::

        {
          "input_values":   (B, T) float32, zero-padded after normalisation,
          "attention_mask": (B, T) int64, 1 on samples, 0 on padding,
          "lengths":        (B,) int64 samples per clip before padding,
          "paths":          list[str] of B audio paths,
          "skipped":        list[str] paths dropped from this batch because they could not be
                            decoded (only with skip_bad_audio=True; usually empty),
          "labels":         (B,) int64 indices into label_names, -1 if unknown  [classification]
                            (B, U) int64 transcript ids, -100 after the end     [transcription]
          "text":           list[str] of B normalised transcripts, "" if unknown [transcription]
        }                   (unlabelled batches have neither "labels" nor "text")

    Transcripts (transcription) are the CTC targets (`lit_tasks.data.transcripts`): normalised
    (``case``, ``remove_chars``, whitespace collapsed), then encoded with the character
    vocabulary (``vocab``); one built from the train transcripts is "<pad>", "<unk>",
    ``word_delimiter``, then the characters in sorted order, the pad token being the CTC blank.
    ``vocab`` and ``vocab_size`` are set right after construction (the CLI links ``vocab_size``
    into the model's CTC head); a character outside the vocabulary is handled by ``oov``.

    Clips longer than ``max_duration`` are cropped, dropped or an error (``long_clips``), counted
    in :attr:`report` and logged. Clips whose header cannot be read (corrupt, truncated, 0
    samples, a sampling rate outside 1-768 kHz) fail at set-up with a DataError naming file and
    row, or are dropped there (``skip_bad_audio``). NaN or infinite samples (float WAV/FLAC can
    hold them) are found when a clip is decoded: a
    :class:`~lit_tasks.data.audio_sources.BadAudioError` naming the file and row, or with
    ``skip_bad_audio`` a clip left out of its batch and listed in ``"skipped"``; they never
    reach a batch. A manifest ``duration`` spares the header read at set-up, so with it every
    bad clip is found when decoded.

    Training batches come from the project's resumable loader (``samplers.split_loader``): the
    order is a function of (seed, epoch), the position inside the epoch is checkpointed, and a
    resumed run sees exactly the remaining batches. With ``bucket_by_length`` they group clips of
    similar length (``LengthGroupedSampler``: shuffled, sorted by length within mega-batches,
    batch order shuffled, every DDP rank gets rows of similar length in each step) and val/test
    run in length order; otherwise train shuffles plainly and eval keeps file order. Under DDP,
    ranks run the same number of training steps (the shuffled list is padded to a multiple of
    the world size, as torch's DistributedSampler does); eval loaders never pad or repeat.

    ``label_names`` (sorted unique train labels or class folder names) and ``num_classes`` are
    set right after construction for classification, and only then (use :meth:`transcripts` to
    build a vocabulary).

    Args:
        train_file: the train manifest: CSV (with a header) or JSONL with path_column, the
            label or text column (by task; unlabelled: the path only) and optionally
            duration (seconds); relative paths resolve against the manifest's folder. A
            list: several manifests read one after the other (e.g. two corpora).
        val_file: the validation manifest(s), like train_file (needs train_file); None: none.
        test_file: the test manifest(s), like train_file (needs train_file); None: none.
        predict_file: a manifest of the clips to predict (path_column only); None: predict
            reads the test split.
        root: a folder layout instead of manifests: for classification
            root/{train,val,test}/<class name>/**/*.{wav,flac,ogg,mp3}; for unlabelled any
            audio file under root/{train,val,test}, recursively (sub-folder names ignored).
            Not for transcription.
        task: "classification" (a label per clip), "transcription" (a transcript per clip,
            the CTC targets) or "unlabelled" (audio only, e.g. for wav2vec2 contrastive
            pretraining: lit_tasks.tasks.Wav2Vec2Pretraining).
        path_column: the manifests' column of the audio file path.
        label_column: the manifests' column of the class label (classification).
        text_column: the manifests' column of the transcript (transcription).
        vocab: transcription: the character vocabulary, a vocab.json or a folder holding one.
            None: the preprocessor's (an HF folder's vocab.json, or a lit_tasks
            speech-recognition .ckpt), else one built from the normalised train transcripts.
        word_delimiter: the vocabulary token that stands for the space between words.
        case: transcripts are lowercased ("lower"), uppercased ("upper") or kept as written
            ("keep") before encoding.
        remove_chars: the characters deleted from transcripts before encoding; "": none.
        oov: a transcript character outside the vocabulary: "error" stops at set-up with a
            DataError naming the manifest file, row and character; "unk" encodes it as the
            unknown token (the vocabulary needs one); "drop" deletes it. unk and drop count
            such characters per split (report[split]["oov"]) and warn.
        sampling_rate: the rate (Hz) every clip is resampled to; a preprocessor's
            sampling_rate replaces it.
        normalize: scale every clip to zero mean and unit variance (as wav2vec2 feature
            extractors do); a preprocessor's do_normalize replaces it.
        preprocessor: an HF checkpoint folder, its preprocessor_config.json or a lit_tasks
            .ckpt, whose sampling_rate / do_normalize replace the arguments and whose
            vocabulary is used when vocab is None; the CLI links model.init_from here.
        max_duration: the longest clip, in seconds (long_clips says what happens to longer
            ones); None: no limit.
        long_clips: a clip longer than max_duration: "crop" cuts it to a random window in
            train (seeded per sample and epoch, so a resumed run crops alike) and the centre
            window in eval (not for transcription: a crop would no longer match its
            transcript); "filter" drops it from every split; "error" raises a DataError
            naming the clip.
        batch_size: clips per training batch (on each process under data parallelism).
        eval_batch_size: clips per val/test/predict batch; None: batch_size.
        num_workers: DataLoader worker processes; 0 loads in the main process; "auto": none
            when the model runs on the CPU, else one per CPU core of this process's share, at
            most 8 (:func:`lit_tasks.data.samplers.loader_workers`).
        bucket_by_length: batch training clips of similar length together and run val/test
            in length order (less padding, same metrics); False: train shuffles plainly and
            eval keeps file order.
        skip_bad_audio: drop clips that cannot be read (counted, warned, listed in
            report) or decoded (listed in the batch's "skipped") instead of stopping with
            a DataError naming the file and row.
        speed_perturbation: [low, high] speed factors, e.g. [0.9, 1.1]: every training clip is
            played at a random speed in that range, tempo and pitch together (Ko et al. 2015),
            which helps a model trained on few speakers generalise to new voices; transcripts
            and labels stay valid and eval is untouched. None: off.
        cache_audio: decode and resample every clip of a split once, when the split is set up,
            and keep it in memory (4 bytes per sample at sampling_rate, logged), instead of
            doing it again every epoch; cropping, speed perturbation and normalisation still
            run per epoch. For datasets of short clips that fit in memory (the bundled spoken
            digits: 8 MB).
    """

    def __init__(
        self,
        train_file: str | list[str] | None = None,
        val_file: str | list[str] | None = None,
        test_file: str | list[str] | None = None,
        predict_file: str | None = None,
        root: str | None = None,
        task: Literal["classification", "transcription", "unlabelled"] = "classification",
        path_column: str = "path",
        label_column: str = "label",
        text_column: str = "text",
        vocab: str | None = None,
        word_delimiter: str = "|",
        case: Literal["lower", "upper", "keep"] = "lower",
        remove_chars: str = '.,?!;:"',
        oov: Literal["error", "unk", "drop"] = "error",
        sampling_rate: int = 16000,
        normalize: bool = True,
        preprocessor: str | None = None,
        max_duration: float | None = None,
        long_clips: Literal["crop", "filter", "error"] = "filter",
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int | Literal["auto"] = "auto",
        bucket_by_length: bool = True,
        skip_bad_audio: bool = False,
        speed_perturbation: tuple[float, float] | None = None,
        cache_audio: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        if task not in ("classification", "transcription", "unlabelled"):
            raise DataError(
                f"AudioDataModule: task is {task!r}; expected 'classification', 'transcription' or 'unlabelled'."
            )
        if root and (train_file or val_file or test_file):
            raise DataError("AudioDataModule: give root or train_file/val_file/test_file, not both.")
        if root and task == "transcription":
            raise DataError(
                "AudioDataModule: the folder layout (root) is for classification and unlabelled audio; "
                "transcription needs manifests with a text column."
            )
        if (val_file or test_file) and not train_file:
            raise DataError(
                "AudioDataModule: val_file/test_file need train_file (train defines the classes/vocabulary)."
            )
        if max_duration is not None and not max_duration > 0:
            raise DataError(f"AudioDataModule: max_duration is {max_duration!r}; expected seconds > 0 or null.")
        if long_clips == "crop" and task == "transcription" and max_duration is not None:
            raise DataError(
                "AudioDataModule: long_clips='crop' cuts audio and would no longer match its transcript; "
                "use long_clips='filter' or 'error' for transcription."
            )
        if speed_perturbation is not None and not (
                len(speed_perturbation) == 2 and 0 < speed_perturbation[0] <= speed_perturbation[1]):
            raise DataError(f"AudioDataModule: speed_perturbation is {speed_perturbation!r}; expected [low, high] "
                            "speed factors with 0 < low <= high, e.g. [0.9, 1.1], or null.")
        if case not in ("lower", "upper", "keep") or oov not in OOV_MODES:
            raise DataError(f"AudioDataModule: case is {case!r} and oov {oov!r}; expected case 'lower', 'upper' or "
                            "'keep' and oov 'error', 'unk' or 'drop'.")
        if long_clips not in ("crop", "filter", "error"):
            raise DataError(f"AudioDataModule: long_clips is {long_clips!r}; expected 'crop', 'filter' or 'error'.")
        self.train_file, self.val_file, self.test_file = train_file, val_file, test_file
        self.predict_file = predict_file
        self.root, self.task = root, task
        self.path_column, self.label_column, self.text_column = path_column, label_column, text_column
        self.max_duration, self.long_clips = max_duration, long_clips
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.bucket_by_length, self.skip_bad_audio = num_workers, bucket_by_length, skip_bad_audio
        self.speed_perturbation = tuple(speed_perturbation) if speed_perturbation else None
        self.cache_audio = cache_audio

        from_pre = src.read_preprocessor(preprocessor) if preprocessor else {}
        for key, given in (("sampling_rate", sampling_rate), ("normalize", normalize)):
            if key in from_pre and from_pre[key] != given:
                log.info("preprocessor %s sets %s=%r (the argument said %r).", preprocessor, key, from_pre[key], given)
        self.sampling_rate: int = from_pre.get("sampling_rate", sampling_rate)
        self.normalize: bool = from_pre.get("normalize", normalize)
        if isinstance(self.sampling_rate, bool) or not isinstance(self.sampling_rate, int) or self.sampling_rate <= 0:
            raise DataError(
                f"AudioDataModule: sampling_rate is {self.sampling_rate!r}; expected a positive integer (Hz)."
            )

        self.report: dict[str, dict[str, Any]] = {}  # split -> counts of cropped / filtered / skipped clips
        self._records: dict[str, list[AudioRecord]] = {}
        self._datasets: dict[str, AudioDataset] = {}
        self._train_rows: list[TableRow] | None = None
        if task == "classification":  # only then: the CLI links them into the model when present
            self.label_names: list[str] = []
            if root:
                self.label_names = src.folder_classes(root, "train")
            elif train_file:
                self._train_rows = self._read_rows(train_file)
                self.label_names = src.manifest_labels(self._train_rows)
            self.num_classes: int = len(self.label_names)
        self.normalize_text = TextNormalizer(case, remove_chars)
        self.targets: TranscriptTargets | None = None
        if task == "transcription":  # the CTC targets; their vocab_size is linked into the model
            char_vocab = given_vocab(vocab, preprocessor, word_delimiter)
            if char_vocab is None and train_file:
                self._train_rows = self._read_rows(train_file)
                char_vocab = CharVocab.build((self.normalize_text(r.value) for r in self._train_rows), word_delimiter)
            if char_vocab is not None:  # none: predict from a checkpoint, which has its own
                self.targets = TranscriptTargets(char_vocab, self.normalize_text, oov)
                self.vocab: CharVocab = char_vocab
                self.vocab_size: int = len(char_vocab)

    # ------------------------------------------------------------------ records

    def _value_column(self) -> tuple[str | None, str]:
        if self.task == "classification":
            return self.label_column, "class label"
        if self.task == "transcription":
            return self.text_column, "transcript"
        return None, "audio path"

    def _read_rows(self, files: str | list[str], labelled: bool = True) -> list[TableRow]:
        """The rows of one manifest or of a list of manifests, in order."""
        column, kind = self._value_column()
        files = [files] if isinstance(files, str) else files
        return [row for file in files
                for row in src.read_manifest(file, self.path_column, column if labelled else None, kind)]

    def has_split(self, split: str) -> bool:
        """Whether the data has ``split`` ("train", "val", "test")."""
        if self.root:
            return os.path.isdir(os.path.join(self.root, split))
        return bool({"train": self.train_file, "val": self.val_file, "test": self.test_file}[split])

    def _rows(self, split: str) -> list[TableRow]:
        if split == "predict" and self.predict_file:
            return self._read_rows(self.predict_file, labelled=False)
        split_ = "test" if split == "predict" else split
        if not self.has_split(split_):
            what = f"the folder {os.path.join(self.root, split_)}" if self.root else f"{split_}_file"
            raise DataError(f"AudioDataModule: {split} needs the {split_} split, but {what} was not found/given.")
        if self.root and self.task == "unlabelled":
            return src.unlabelled_folder_rows(self.root, split_)
        if self.root:
            return src.folder_rows(self.root, split_, self.label_names)
        if split_ == "train" and self._train_rows is not None:
            return self._train_rows
        return self._read_rows({"train": self.train_file, "val": self.val_file, "test": self.test_file}[split_])

    def records(self, split: str) -> list[AudioRecord]:
        """Validated records of ``train``/``val``/``test``/``predict`` (cached). Reads every
        file header that the manifest gives no duration for."""
        if split in self._records:
            return self._records[split]
        rows = self._rows(split)
        unlabelled = split == "predict" and bool(self.predict_file)
        index = {name: i for i, name in enumerate(self.label_names)} if self.task == "classification" else {}
        counts = {"rows": len(rows), "bad": 0, "filtered": 0, "cropped": 0, "oov": 0}
        bad, filtered, records = [], [], []
        for row in rows:
            label, text = -1, ""
            if self.task == "classification" and not unlabelled:
                if row.value not in index:
                    raise DataError(
                        f"{row.where}: label {row.value!r} of the {split} split never occurs in the train data "
                        f"({len(self.label_names)} classes: {src.preview(self.label_names)}). A model cannot "
                        "predict a class it was not trained on; fix the label or add training clips."
                    )
                label = index[row.value]
            elif self.task == "transcription" and not unlabelled:
                if self.targets is None:
                    text = self.normalize_text(row.value)
                else:
                    text, unknown = self.targets.reference(row.value, row.where)
                    counts["oov"] += unknown
            try:
                duration = row.duration if row.duration is not None else src.audio_duration(row.path, row.where)
            except BadAudioError as e:
                if not self.skip_bad_audio:
                    raise
                bad.append(row.path)
                log.warning("Skipping audio (skip_bad_audio=True): %s", e)
                continue
            if self.max_duration is not None and duration > self.max_duration:
                if self.long_clips == "error":
                    raise DataError(
                        f"{row.where}: the clip lasts {duration:.2f} s, longer than max_duration={self.max_duration} s "
                        "(long_clips='error'); raise max_duration or set long_clips to 'filter' or 'crop'."
                    )
                if self.long_clips == "filter":
                    filtered.append(row.path)
                    continue
                counts["cropped"] += 1
            records.append(AudioRecord(row.path, label, text, row.where, duration))
        counts["bad"], counts["filtered"] = len(bad), len(filtered)
        if self.targets is not None:
            self.targets.warn(split, counts["oov"])
        self.report[split] = {**counts, "kept": len(records), "bad_files": bad, "filtered_files": filtered}
        parts = []
        if bad:
            parts.append(f"{len(bad)} unreadable clip(s) skipped ({src.preview(bad, 3)})")
        if filtered:
            parts.append(
                f"{len(filtered)} clip(s) longer than max_duration={self.max_duration} s dropped "
                f"({src.preview(filtered, 3)})"
            )
        if counts["cropped"]:
            parts.append(f"{counts['cropped']} clip(s) longer than max_duration={self.max_duration} s will be cropped")
        if parts:
            log.warning(
                "AudioDataModule %s split: %d of %d clips kept; %s.", split, len(records), len(rows), "; ".join(parts)
            )
        if not records:
            raise DataError(
                f"AudioDataModule: the {split} split has no usable clips ({len(rows)} rows, {len(bad)} unreadable, "
                f"{len(filtered)} too long)."
            )
        self._records[split] = records
        return records

    def transcripts(self, split: str = "train") -> list[str]:
        """The normalised transcripts of a split (transcription)."""
        if self.task != "transcription":
            raise DataError("AudioDataModule.transcripts() needs task='transcription'.")
        return [r.text for r in self.records(split)]

    # ------------------------------------------------------------------------- Lightning hooks

    def setup(self, stage: str | None = None) -> None:
        if not (self.root or self.train_file) and stage != "predict":
            raise DataError(
                "AudioDataModule: no training data given; set train_file or root (only predict works with "
                "predict_file alone)."
            )
        for split in self.splits_for(stage):
            self._dataset(split)

    def _dataset(self, split: str) -> AudioDataset:
        if split not in self._datasets:
            crop = 0
            if self.max_duration is not None and self.long_clips == "crop":
                crop = max(1, int(self.max_duration * self.sampling_rate))
            self._datasets[split] = AudioDataset(
                self.records(split), self.sampling_rate, self.normalize, crop=crop,
                train=split == "train", skip_bad_audio=self.skip_bad_audio, speed=self.speed_perturbation,
                encode=self.targets.encode if self.targets is not None else None,
            )
            if self.cache_audio:
                start = time.perf_counter()
                size = self._datasets[split].cache()
                log.info("cache_audio: decoded the %d %s clips (%.1f MB) in %.1f s", len(self._datasets[split]), split,
                         size / 1e6, time.perf_counter() - start)
        return self._datasets[split]

    def _loader(self, split: str) -> DataLoader:
        dataset, train = self._dataset(split), split == "train"
        trainer = getattr(self, "trainer", None)
        lengths = dataset.lengths() if self.bucket_by_length and split != "predict" else None
        eval_sampler = None
        if lengths is not None and not train:  # eval in length order: less padding, same metrics
            order = sorted(range(len(lengths)), key=lengths.__getitem__)
            eval_sampler = distributed_eval_sampler(dataset, trainer, order=order)
        return split_loader(
            dataset, train, self.batch_size if train else self.eval_batch_size, AudioCollate(self.task),
            self.num_workers, trainer, lengths=lengths if train else None, eval_sampler=eval_sampler,
        )

    def preprocessor_config(self) -> dict[str, Any]:
        """An HF feature-extractor dict (``preprocessor_config.json``) matching this data."""
        return {
            "feature_extractor_type": "Wav2Vec2FeatureExtractor",
            "feature_size": 1,
            "sampling_rate": self.sampling_rate,
            "padding_value": 0.0,
            "padding_side": "right",
            "do_normalize": self.normalize,
            "return_attention_mask": True,
        }
