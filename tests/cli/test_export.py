"""Export round trip: train a few steps, export, load in transformers, same logits (image, audio
and text tasks; the tokenizer files too); the model card (README.md) that export writes: its
front matter, its metrics against results.json, and its loading snippets run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import (
    AUDIO_CLASSES, make_audio_folder, make_image_folder, make_transcribed_audio, mlm_args, ner_args, qa_args, run_cli,
    text_args, tiny_args, tiny_audio_args, write_corpus, write_ner_data, write_ner_tokenizer, write_qa_data,
    write_qa_tokenizer, write_text_csvs, write_text_tokenizer,
)
from PIL import Image

from lit_tasks.commands import main
from lit_tasks.errors import ConfigError
from lit_tasks.export import export_checkpoint
from lit_tasks.model_card import Export, write_model_card
from lit_tasks.tasks import (
    AudioClassification, ImageClassification, MaskedLanguageModeling, QuestionAnswering, SpeechRecognition,
    TextClassification, TokenClassification,
)
from lit_tasks.tasks.ctc_decoding import collapse
from lit_tasks.text.tokenizer import load_tokenizer

transformers = pytest.importorskip("transformers")


BACKBONES = ("vit-test", "convnext-test")


@pytest.fixture(scope="module")
def image_exports(tmp_path_factory) -> dict[str, tuple[Path, Path, Path]]:
    """{backbone: (run folder, best.ckpt, exported folder)} of a one-epoch fit (then test) on
    tiny images, exported by the CLI; shared by the logits and model card tests."""
    exports = {}
    for backbone in BACKBONES:
        tmp = tmp_path_factory.mktemp(backbone)
        images = make_image_folder(tmp / "images", {"train": 8, "val": 5, "test": 4})
        trained = run_cli("fit", *tiny_args(images, tmp, backbone=backbone), "--trainer.max_epochs", "1")
        assert trained.returncode == 0, trained.stderr[-3000:]
        (run_dir,) = (tmp / "tiny").iterdir()
        ckpt = run_dir / "checkpoints" / "best.ckpt"
        out = tmp / "exported"
        exported = run_cli("export", "--ckpt_path", str(ckpt), "--out", str(out), "--license", "mit")
        assert exported.returncode == 0, exported.stderr[-3000:]
        exports[backbone] = run_dir, ckpt, out
    return exports


@pytest.mark.parametrize("backbone", BACKBONES)
def test_exported_folder_loads_in_transformers_with_same_logits(backbone, image_exports):
    _, ckpt, out = image_exports[backbone]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "circle", "1": "square", "2": "stripes"}
    preprocessor = json.loads((out / "preprocessor_config.json").read_text())
    assert preprocessor["size"] == {"height": 32, "width": 32}

    ours = ImageClassification.load_from_checkpoint(ckpt, map_location="cpu").eval()
    theirs = transformers.AutoModelForImageClassification.from_pretrained(out).eval()
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(pixel_values=pixels).logits, ours(pixels), atol=1e-5, rtol=0)


# -- the model card (README.md) --------------------------------------------------------------

def card_parts(folder: Path) -> tuple[dict, str]:
    """(front matter, body) of the folder's README.md; the front matter read by yaml.safe_load."""
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    header, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


def python_blocks(body: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def run_card_snippet(folder: Path) -> dict:
    """Run the card's `transformers` snippet; its names (`model`, `processor`/`tokenizer`)."""
    _, body = card_parts(folder)
    snippet = python_blocks(body)[0]
    architecture = json.loads((folder / "config.json").read_text())["architectures"][0]
    assert f"from transformers import" in snippet and f"model = {architecture}.from_pretrained(" in snippet
    names: dict = {}
    exec(snippet, names)
    assert type(names["model"]) is getattr(transformers, architecture)
    return names


def model_index(header: dict) -> dict[str, dict[str, float]]:
    """{split: {metric name: value}} of the card's model-index."""
    (entry,) = header["model-index"]
    return {r["dataset"]["split"]: {m["name"]: m["value"] for m in r["metrics"]} for r in entry["results"]}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_model_card_front_matter_carries_the_runs_metrics_with_their_splits(backbone, image_exports):
    run_dir, _, out = image_exports[backbone]
    results = json.loads((run_dir / "results.json").read_text())
    header, body = card_parts(out)
    family = json.loads((out / "config.json").read_text())["model_type"]
    assert header["license"] == "mit" and header["pipeline_tag"] == "image-classification"
    assert set(header["tags"]) == {"image-classification", family, "lit_tasks"}
    assert header["datasets"] == ["images"]
    best = results["best"]
    (row,) = [r for r in results["history"] if r["step"] == best["step"]]
    expected = {"validation": {k: v for k, v in row.items() if k.startswith("val/")},
                "test": {k: v for k, v in results["metrics"].items() if k.startswith("test/")}}
    assert expected["validation"] and expected["test"]
    assert model_index(header) == expected
    result = header["model-index"][0]["results"][0]
    assert result["task"] == {"type": "image-classification", "name": "Image Classification"}
    assert {"type": "accuracy", "name": "test/acc", "value": results["metrics"]["test/acc"]} in \
        header["model-index"][0]["results"][1]["metrics"]
    # how it was trained
    hardware = results["hardware"]["fit"]
    assert hardware["accelerator"] == "cpu" and hardware["devices"] == 1 and hardware["cpu_cores"] >= 1
    assert f"CPU {hardware['cpu']}" in body and f"seed: {results['seed']}" in body.lower()
    assert f"torch {results['versions']['torch']}" in body and "Epochs run: 1" in body
    assert f"{best['monitor']} = {best['score']:.4f}" in body
    assert yaml.safe_load(re.search(r"```yaml\n(.*?)```", body, flags=re.S)[1]) == results["config"]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_model_card_snippets_load_the_folder_with_the_same_outputs(backbone, image_exports):
    _, _, out = image_exports[backbone]
    theirs = run_card_snippet(out)
    ours: dict = {}
    exec(python_blocks(card_parts(out)[1])[1], ours)  # the lit_tasks one
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    pixels = theirs["processor"](images=image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs["model"].eval()(pixel_values=pixels).logits, ours["model"].eval()(pixels),
                                   atol=1e-5, rtol=0)


def test_model_card_without_results_json_comes_from_the_checkpoint(image_exports, tmp_path):
    run_dir, ckpt, _ = image_exports["vit-test"]
    alone = tmp_path / "copied.ckpt"
    shutil.copy(ckpt, alone)
    out = export_checkpoint(alone, tmp_path / "out")
    header, body = card_parts(out)
    assert "model-index" not in header and header["license"] == "other" and "--license" in body
    assert "training record was not found" in body and "--results" in body
    run_card_snippet(out)
    # pointed at the run's results.json, the card has the metrics again
    header, _ = card_parts(export_checkpoint(alone, tmp_path / "out2", results_path=run_dir / "results.json"))
    assert set(model_index(header)) == {"validation", "test"}
    with pytest.raises(ConfigError, match="--results .*nothing.json"):
        export_checkpoint(alone, tmp_path / "out3", results_path=tmp_path / "nothing.json")


def test_export_of_a_damaged_results_json_names_it(image_exports, tmp_path, capsys):
    _, ckpt, _ = image_exports["vit-test"]
    bad = tmp_path / "results.json"
    bad.write_text('{"status": "finished",\n  "metrics": {')
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "out"), "--results", str(bad)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{bad}: not valid JSON at line 2" in err and "Traceback" not in err


# -- the model card from records alone (no training): older results.json, other weights, demo data --

def card_of(tmp_path: Path, results: dict | None, step: int | None = 30, task: str = "ImageClassification",
            data: dict | None = None) -> tuple[dict, str]:
    """(front matter, body) of the card of a ViT classifier exported at `step`, given `results`."""
    folder = tmp_path / "exported"
    folder.mkdir(exist_ok=True)
    config_json = {"architectures": ["ViTForImageClassification"], "model_type": "vit"}
    (folder / "config.json").write_text(json.dumps(config_json))
    if results is not None and data is not None:
        results = {**results, "config": {"data": {"init_args": data}}}
    export = Export(folder=folder, ckpt_path=tmp_path / "run" / "checkpoints" / "last.ckpt",
                    meta={"task": task, "spec": {"family": "vit", "head": "classification"}, "label_names": ["a", "b"]},
                    config_json=config_json, epoch=2, step=step, parameters=1000, results=results,
                    results_path=tmp_path / "run" / "results.json")
    write_model_card(export)
    return card_parts(folder)


@pytest.mark.parametrize("results", [
    {},
    {"status": "finished"},
    {"status": "finished", "metrics": {"val/acc": "high", "test/acc": None, "val/nan": float("nan")},
     "history": "lost", "best": None, "wall_time_s": None, "hardware": {"fit": "a100"}, "versions": ["torch"],
     "config": None, "commands": "fit", "throughput": [3.0]},
    {"metrics": {"val/acc": 0.5}, "history": [{"epoch": 0}, {"step": 30, "val/acc": 0.7}, 7], "best": 0.9},
])
def test_model_card_of_an_older_or_partial_results_json(results, tmp_path):
    header, body = card_of(tmp_path, results)
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "image-classification"
    assert "not recorded" in body and "ViTForImageClassification.from_pretrained(" in body
    index = model_index(header) if "model-index" in header else {}
    assert index in ({}, {"validation": {"val/acc": 0.7}})  # only a number of the exported step's epoch


def test_test_metrics_of_other_weights_stay_out_of_the_model_index(tmp_path):
    history = [{"epoch": e, "step": 10 * (e + 1), "val/acc": 0.1 * e, "train/loss": 1.0} for e in range(3)]
    results = {"history": history, "metrics": {"val/acc": 0.25, "test/acc": 0.15},  # val: a later validate
               "best": {"monitor": "val/acc", "mode": "max", "score": 0.1, "epoch": 1, "step": 20}}
    header, body = card_of(tmp_path, results, step=30)  # last.ckpt, epoch 2; fit tested best.ckpt (step 20)
    assert model_index(header) == {"validation": {"val/acc": history[2]["val/acc"]}}
    assert "| test | `test/acc` | 0.1500 | step 20, not the exported checkpoint (step 30) |" in body
    header, _ = card_of(tmp_path, results, step=20)  # best.ckpt: the tested weights
    assert model_index(header) == {"validation": {"val/acc": history[1]["val/acc"]}, "test": {"test/acc": 0.15}}
    header, _ = card_of(tmp_path, results, step=None)  # a step the checkpoint does not give: nothing is sure
    assert "model-index" not in header


@pytest.mark.parametrize("data, name, licence", [
    ({"root": "demo_data/fashion_mnist"}, "fashion_mnist", "MIT"),
    ({"train_file": "/x/demo_data/debian_sections/train.csv", "val_file": "v.csv"}, "debian_sections", "DFSG"),
    ({"train_file": ["data/my_set/a.jsonl", "data/my_set/b.jsonl"]}, "my_set", None),
    ({"hf_dataset": "/data/squad_saved"}, "squad_saved", None),
])
def test_model_card_names_the_data_and_a_demo_datasets_licence(data, name, licence, tmp_path):
    header, body = card_of(tmp_path, {"status": "finished"}, data=data)
    assert header["datasets"] == [name]
    assert (licence in body.split("- Data:")[1].splitlines()[0]) if licence else "ATTRIBUTION" not in body


def test_model_card_of_a_task_without_a_pipeline_tag(tmp_path):
    history = [{"epoch": 0, "step": 30, "val/loss": 1.5}]
    header, body = card_of(tmp_path, {"history": history}, task="Wav2Vec2Pretraining")
    assert "pipeline_tag" not in header and header["tags"] == ["vit", "lit_tasks"]
    assert "model-index" not in header  # the Hub would reject a task type of its own
    assert "| validation | `val/loss` | 1.5000 |" in body and "no task type for this task" in body


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
    assert run_card_snippet(out)["processor"].sampling_rate == 16000  # the model card's snippet
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
    assert type(run_card_snippet(out)["processor"]) is transformers.Wav2Vec2Processor  # the model card's snippet
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
    card_tokenizer = run_card_snippet(out)["tokenizer"]  # the model card's snippet: the model and its tokenizer
    assert card_tokenizer(texts[0][0])["input_ids"] == load_tokenizer(used).encode(texts[0][0])["input_ids"]
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


def test_model_card_names_the_recipe_given_with_config(tmp_path):
    _, body = card_of(tmp_path, {"status": "finished", "recipe": ["configs/image_classification/vit_fashion_mnist.yaml"]})
    recipe = body.split("- Recipe:")[1].splitlines()[0]
    assert recipe.startswith(" `configs/image_classification/vit_fashion_mnist.yaml` (--config)")
    _, body = card_of(tmp_path, {"status": "finished", "recipe": []})  # options on the command line only
    assert body.split("- Recipe:")[1].startswith(" resolved as the config below")
