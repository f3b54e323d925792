"""Export round trip: train a few steps, export, load in transformers, same logits (image, audio
and text tasks; the tokenizer files too)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    AUDIO_CLASSES, make_audio_folder, make_transcribed_audio, mlm_args, ner_args, qa_args, run_cli, text_args,
    tiny_args, tiny_audio_args, write_corpus, write_ner_data, write_ner_tokenizer, write_qa_data, write_qa_tokenizer,
    write_text_csvs, write_text_tokenizer,
)

from lit_tasks.cli import main
from lit_tasks.export import export_checkpoint
from lit_tasks.tasks import (
    AudioClassification, ImageClassification, MaskedLanguageModeling, QuestionAnswering, SpeechRecognition,
    TextClassification, TokenClassification,
)
from lit_tasks.tasks.ctc_decoding import collapse
from lit_tasks.text.tokenizer import load_tokenizer

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("backbone", ["vit-test", "convnext-test"])
def test_exported_folder_loads_in_transformers_with_same_logits(backbone, tmp_path, image_folder):
    args = tiny_args(image_folder, tmp_path, backbone=backbone)
    trained = run_cli("fit", *args, "--trainer.max_epochs", "1", "--run.test_after_fit", "false")
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run_dir,) = (tmp_path / "tiny").iterdir()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    out = tmp_path / "exported"
    exported = run_cli("export", "--ckpt_path", str(ckpt), "--out", str(out))
    assert exported.returncode == 0, exported.stderr[-3000:]

    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "circle", "1": "square", "2": "stripes"}
    preprocessor = json.loads((out / "preprocessor_config.json").read_text())
    assert preprocessor["size"] == {"height": 32, "width": 32}

    ours = ImageClassification.load_from_checkpoint(ckpt, map_location="cpu").eval()
    theirs = transformers.AutoModelForImageClassification.from_pretrained(out).eval()
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(pixel_values=pixels).logits, ours(pixels), atol=1e-5, rtol=0)


def test_export_of_a_damaged_checkpoint_is_clear(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    result = run_cli("export", "--ckpt_path", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and str(bad) in result.stderr and "Traceback" not in result.stderr


# -- audio and text tasks: a few training steps in process, export, load in transformers --------

def _fit_and_export(args: list[str], tmp_path: Path) -> tuple[Path, Path]:
    """Run `fit` with `args` for 2 steps, export its last checkpoint; (checkpoint, folder)."""
    main(["fit", *args, "--trainer.max_steps", "2", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
          "--run.test_after_fit", "false"])
    (ckpt,) = tmp_path.glob("runs/*/*/checkpoints/last.ckpt")
    out = export_checkpoint(ckpt, tmp_path / "exported")
    return ckpt, out


def _audio_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 4000) audio, the second clip padded after 2800 samples, and its mask."""
    audio = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 4000, dtype=torch.long)
    mask[1, 2800:], audio[1, 2800:] = 0, 0.0
    return audio, mask


def test_audio_classification_export_loads_in_transformers(tmp_path):
    data = make_audio_folder(tmp_path / "audio", {"train": 2, "val": 1})
    ckpt, out = _fit_and_export(tiny_audio_args(data, tmp_path / "runs", "classification"), tmp_path)

    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(AUDIO_CLASSES)}
    assert json.loads((out / "preprocessor_config.json").read_text())["sampling_rate"] == 16000
    ours = AudioClassification.load_from_checkpoint(ckpt, map_location="cpu").net.eval()
    theirs = transformers.Wav2Vec2ForSequenceClassification.from_pretrained(out).eval()
    audio, mask = _audio_batch()
    with torch.no_grad():
        torch.testing.assert_close(theirs(audio, attention_mask=mask).logits, ours(audio, mask), atol=1e-5, rtol=0)


def test_speech_recognition_export_loads_as_processor_and_ctc_model(tmp_path):
    data = make_transcribed_audio(tmp_path / "asr", {"train": 4, "val": 2, "test": 1})
    ckpt, out = _fit_and_export(tiny_audio_args(data, tmp_path / "runs", "transcription"), tmp_path)

    task = SpeechRecognition.load_from_checkpoint(ckpt, map_location="cpu")
    ours, vocab = task.net.eval(), task.vocab
    theirs = transformers.Wav2Vec2ForCTC.from_pretrained(out).eval()
    assert theirs.config.vocab_size == len(vocab) and theirs.config.pad_token_id == vocab.pad_id
    audio, mask = _audio_batch()
    with torch.no_grad():
        torch.testing.assert_close(theirs(audio, attention_mask=mask).logits, ours(audio, mask), atol=1e-5, rtol=0)

    processor = transformers.Wav2Vec2Processor.from_pretrained(out)
    tokenizer = processor.tokenizer
    assert tokenizer.get_vocab() == vocab.tokens and tokenizer.pad_token_id == vocab.pad_id
    assert processor.feature_extractor.sampling_rate == 16000
    # Frame-level CTC paths of transcripts (repeats, blanks between and around labels), as a
    # greedy decoder sees them: transformers' tokenizer and our vocabulary read the same text.
    rng = np.random.default_rng(0)
    chars = sorted(vocab.chars)
    for _ in range(20):
        text = " ".join("".join(rng.choice(chars, rng.integers(1, 5))) for _ in range(rng.integers(1, 4)))
        path = _ctc_path(vocab.encode(text), vocab.pad_id, rng)
        assert tokenizer.decode(path) == vocab.decode(collapse(path, vocab.pad_id)) == text
        assert tokenizer(text).input_ids == vocab.encode(text)


def _ctc_path(labels: list[int], blank: int, rng: np.random.Generator) -> list[int]:
    """A CTC alignment of `labels`: each label 1-3 frames, 0-2 blanks before each and at the end,
    at least one blank between equal neighbours."""
    path: list[int] = []
    for i, label in enumerate(labels):
        blanks = int(rng.integers(0, 3))
        if i and labels[i - 1] == label:
            blanks = max(blanks, 1)
        path += [blank] * blanks + [label] * int(rng.integers(1, 4))
    return path + [blank] * int(rng.integers(0, 3))


def _bert_inputs(out: Path, ours_tokenizer, texts: list[tuple[str, str | None]]) -> dict[str, torch.Tensor]:
    """transformers' tokenizer loaded from the exported folder; its ids must be ours."""
    theirs = transformers.AutoTokenizer.from_pretrained(out)
    firsts, seconds = [t for t, _ in texts], [p for _, p in texts]
    batch = theirs(firsts, seconds if seconds[0] is not None else None, padding=True, return_tensors="pt")
    for i, (text, pair) in enumerate(texts):
        n = int(batch["attention_mask"][i].sum())
        assert batch["input_ids"][i, :n].tolist() == ours_tokenizer.encode(text, pair)["input_ids"]
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def _bert_case(name: str, tmp_path: Path) -> tuple[list[str], type, type, list[tuple[str, str | None]]]:
    """(CLI args, our task class, transformers class, texts to run) of one text task."""
    runs = tmp_path / "runs"
    if name == "text_classification":
        files = write_text_csvs(tmp_path / "text", {"train": 8, "val": 4})
        args = text_args(files, runs, "--model.backbone", "bert-test", "--data.tokenizer",
                         str(write_text_tokenizer(tmp_path / "tok")))
        texts = [("my cat purrs", None), ("the team wins today", None)]
        return args, TextClassification, transformers.BertForSequenceClassification, texts
    if name == "token_classification":
        files = write_ner_data(tmp_path / "ner", {"train": 8, "val": 4})
        args = ner_args(write_ner_tokenizer(tmp_path / "tok"), files, runs)
        texts = [("mr paris visited people .", None), ("the austin company grew", None)]
        return args, TokenClassification, transformers.BertForTokenClassification, texts
    if name == "question_answering":
        files = write_qa_data(tmp_path / "qa", {"train": 8, "val": 4})
        args = qa_args(write_qa_tokenizer(tmp_path / "tok"), files, runs)
        texts = [("what colour is the ball ?", "the ball is red ."), ("what colour ?", "a cat sat .")]
        return args, QuestionAnswering, transformers.BertForQuestionAnswering, texts
    corpus = tmp_path / "corpus"
    write_corpus(corpus / "train.txt", 20)
    write_corpus(corpus / "val.txt", 4, seed=1)
    texts = [("the cat sees a green apple .", None), ("our teacher paints the river", None)]
    return mlm_args(corpus, runs), MaskedLanguageModeling, transformers.BertForMaskedLM, texts


@pytest.mark.parametrize("name", ["text_classification", "token_classification", "question_answering", "masked_lm"])
def test_text_task_export_loads_in_transformers_with_its_tokenizer(name, tmp_path):
    args, task_class, hf_class, texts = _bert_case(name, tmp_path)
    ckpt, out = _fit_and_export(args, tmp_path)

    assert {"tokenizer.json", "vocab.txt", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    ours = task_class.load_from_checkpoint(ckpt, map_location="cpu").net.eval()
    # The run's own tokenizer: the folder given to the data, or the one trained for masked LM.
    used = tmp_path / "tok" if name != "masked_lm" else next((tmp_path / "runs" / "cache").rglob("tokenizer.json"))
    inputs = _bert_inputs(out, load_tokenizer(used), texts)
    theirs = hf_class.from_pretrained(out).eval()
    with torch.no_grad():
        got, expected = theirs(**inputs), ours(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
    if name == "question_answering":
        pairs = [(got.start_logits, expected.start_logits), (got.end_logits, expected.end_logits)]
    elif name == "masked_lm":
        pairs = [(got.logits, expected.prediction_logits)]
    else:
        pairs = [(got.logits, expected)]
        labels = json.loads((out / "config.json").read_text())["id2label"]
        assert list(labels.values()) == torch.load(ckpt, weights_only=True)["lit_tasks"]["label_names"]
    for theirs_logits, ours_logits in pairs:
        torch.testing.assert_close(theirs_logits, ours_logits, atol=1e-5, rtol=0)
