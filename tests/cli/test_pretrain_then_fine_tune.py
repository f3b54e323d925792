"""Pretraining here, then fine-tuning from its best.ckpt (`--model.init_from`), through the CLI:
wav2vec2 contrastive pretraining -> CTC speech recognition, masked LM -> text classification.
The pretrained backbone arrives (checked tensor by tensor), the other task's head is fresh,
and the checkpoint's preprocessing (tokenizer, feature extractor) is the one used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import make_transcribed_audio, mlm_args, text_args, tiny_audio_args, write_corpus, write_text_csvs

from lit_tasks.commands import main

pytestmark = pytest.mark.slow


def fit(*args: str) -> dict:
    """results.json of an in-process `fit` whose --run.dir is the last argument pair."""
    main(["fit", *args])
    results = json.loads((Path(args[-1]) / "results.json").read_text())
    assert results["status"] == "finished", results
    return results


def weights(ckpt: str, prefix: str) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def test_masked_lm_then_text_classification(tmp_path):
    write_corpus(tmp_path / "corpus" / "train.txt", 60, seed=0)
    write_corpus(tmp_path / "corpus" / "val.txt", 10, seed=1)
    pretrained = fit(*mlm_args(tmp_path / "corpus", tmp_path / "runs", "--trainer.max_epochs", "1"),
                     "--run.dir", str(tmp_path / "mlm"))
    ckpt = pretrained["checkpoints"]["best"]
    files = write_text_csvs(tmp_path / "text", {"train": 24, "val": 12})
    # lr 0: the fit changes no weight, so its checkpoint shows what fine-tuning started from
    with pytest.warns(UserWarning, match="classifier of BertForSequenceClassification is freshly initialised"):
        tuned = fit(*text_args(files, tmp_path / "runs", "--model.init_from", ckpt, "--model.lr", "0",
                               "--trainer.max_epochs", "1"), "--run.dir", str(tmp_path / "tuned"))
    start = weights(tuned["checkpoints"]["best"], "net.bert.")
    encoder = weights(ckpt, "net.bert.")
    assert start.keys() == encoder.keys() and all(torch.equal(start[k], encoder[k]) for k in start)
    meta = [torch.load(c, weights_only=True)["lit_tasks"] for c in (ckpt, tuned["checkpoints"]["best"])]
    assert meta[1]["tokenizer_files"] == meta[0]["tokenizer_files"]  # the pretraining's tokenizer, via init_from
    assert meta[1]["spec"]["head"] == "sequence_classification" and meta[1]["spec"]["num_classes"] == 3


def test_wav2vec2_pretraining_then_speech_recognition(tmp_path):
    data = make_transcribed_audio(tmp_path / "speech", {"train": 8, "val": 4, "test": 2})
    audio = ["--data", "lit_tasks.data.AudioDataModule", "--data.train_file", str(data / "train.jsonl"),
             "--data.val_file", str(data / "val.jsonl"), "--data.batch_size", "4", "--data.num_workers", "0"]
    common = ["--trainer.max_epochs", "2", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--run.loggers", "[csv]", "--run.test_after_fit", "false"]
    pretrained = fit("--model", "lit_tasks.tasks.Wav2Vec2Pretraining", "--model.backbone", "wav2vec2-test",
                     "--model.backbone_config", "{feat_extract_norm: layer, conv_bias: true, layerdrop: 0.0}",
                     "--model.mask_length", "4", "--model.lr", "0.003", *audio, "--data.task", "unlabelled",
                     *common, "--run.dir", str(tmp_path / "pretrain"))
    ckpt = pretrained["checkpoints"]["best"]
    args = tiny_audio_args(data, tmp_path / "runs", "transcription")
    args[args.index("--model.backbone"):args.index("--model.backbone") + 2] = []  # the checkpoint's architecture
    with pytest.warns(UserWarning, match="lm_head of Wav2Vec2ForCTC is freshly initialised"):
        tuned = fit(*args, "--model.init_from", ckpt, "--model.freeze_feature_encoder", "true",
                    "--run.test_after_fit", "false", "--run.dir", str(tmp_path / "ctc"))
    assert 0 <= tuned["metrics"]["val/cer"] and tuned["config"]["model"]["init_args"]["init_from"] == ckpt
    # the frozen conv feature encoder is the pretrained one, bit for bit; the Transformer was trained on
    prefix = "net.wav2vec2.feature_extractor."
    frozen, pre = weights(tuned["checkpoints"]["best"], prefix), weights(ckpt, prefix)
    assert frozen and frozen.keys() == pre.keys() and all(torch.equal(frozen[k], pre[k]) for k in frozen)
    layer = "net.wav2vec2.encoder.layers.0.attention.qkv.weight"
    assert not torch.equal(weights(tuned["checkpoints"]["best"], layer)[layer], weights(ckpt, layer)[layer])
