"""AudioClassification and SpeechRecognition: pooling, freezing, vocabularies, normalisation,
CTC decoding, WER/CER, transcript checks and checkpoints (tiny wav2vec2-test models)."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import make_transcribed_audio
from torchmetrics.text import CharErrorRate, WordErrorRate

from lit_tasks.data import AudioDataModule
from lit_tasks.errors import CheckpointError, ConfigError, DataError
from lit_tasks.metrics.asr import ErrorRate
from lit_tasks.tasks import AudioClassification, SpeechRecognition
from lit_tasks.tasks.ctc_decoding import collapse, ctc_log_likelihood, greedy_decode, prefix_beam_search
from lit_tasks.text.char_vocab import CharVocab, TextNormalizer

LAYER_NORM = {"feat_extract_norm": "layer", "conv_bias": True}  # padding-independent feature encoder


# ------------------------------------------------------------------------ classification


def test_pooling_averages_only_the_real_frames():
    torch.manual_seed(0)
    task = AudioClassification(backbone="wav2vec2-test", backbone_config=LAYER_NORM, num_classes=3).eval()
    short, long = torch.randn(1, 1900), torch.randn(1, 4000)
    batch = torch.zeros(2, 4000)
    batch[0, :1900], batch[1] = short[0], long[0]
    mask = torch.zeros(2, 4000, dtype=torch.long)
    mask[0, :1900], mask[1] = 1, 1
    with torch.no_grad():
        alone = task(short, torch.ones(1, 1900, dtype=torch.long))
        padded = task(batch, mask)
        unmasked = task(batch)
    assert torch.allclose(padded[0], alone[0], atol=1e-5)  # padding frames change nothing ...
    assert not torch.allclose(unmasked[0], alone[0], atol=1e-3)  # ... unless the mask is left out
    # the frames kept are those of the feature encoder's length reduction: floor((L - k) / s) + 1
    frames = task.net.wav2vec2.output_lengths(mask.sum(-1))
    assert frames.tolist() == [math.floor((math.floor((math.floor((1900 - 10) / 5) + 1 - 3) / 2) + 1 - 3) / 2) + 1,
                               math.floor((math.floor((math.floor((4000 - 10) / 5) + 1 - 3) / 2) + 1 - 3) / 2) + 1]


def test_freeze_feature_encoder_leaves_the_convs_out_of_the_optimiser(monkeypatch):
    task = AudioClassification(backbone="wav2vec2-test", num_classes=3, freeze_feature_encoder=True)
    frozen = {n for n, p in task.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("net.wav2vec2.feature_extractor.") for n in frozen)
    assert {n for n, _ in task.named_parameters() if n.startswith("net.wav2vec2.feature_extractor.")} == frozen
    trainer = L.Trainer(max_steps=10, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(task)
    task.trainer = trainer
    monkeypatch.setattr(L.Trainer, "estimated_stepping_batches", property(lambda self: 10))
    optimised = {id(p) for g in task.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    assert optimised == {id(p) for n, p in task.named_parameters() if n not in frozen}


def test_layer_decay_depths():
    task = AudioClassification(backbone="wav2vec2-test", num_classes=3, layer_decay=0.5)
    assert task.layer_depth("net.wav2vec2.feature_extractor.conv_layers.0.conv.weight") == (0, 3)
    assert task.layer_depth("net.wav2vec2.encoder.layers.1.attention.qkv.weight") == (2, 3)
    assert task.layer_depth("net.classifier.weight") == (3, 3)


def test_bad_model_config_is_named():
    with pytest.raises(ConfigError, match="model.backbone is 'nope'"):
        AudioClassification(backbone="nope", num_classes=3)
    with pytest.raises(ConfigError, match="model.backbone_config.*hidden_sizes"):
        AudioClassification(backbone="wav2vec2-test", backbone_config={"hidden_sizes": 3}, num_classes=3)
    with pytest.raises(ConfigError, match="label_names has 2 names"):
        AudioClassification(backbone="wav2vec2-test", num_classes=3, label_names=["a", "b"])


# ---------------------------------------------------------------------- vocab and text


def test_hf_vocab_json_round_trip(tmp_path):
    tokens = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "'": 8}
    (tmp_path / "vocab.json").write_text(json.dumps(tokens))
    vocab = CharVocab.from_file(tmp_path)  # a checkpoint folder holding vocab.json
    assert (vocab.pad_id, vocab.unk_id, vocab.delimiter_id, len(vocab)) == (0, 3, 4, 9)
    ids = vocab.encode("EAT TEA'")
    assert ids == [5, 7, 6, 4, 6, 5, 7, 8]
    assert vocab.decode([1, *ids, 2, 3]) == "EAT TEA'"  # <s>, </s>, <unk> are no characters
    assert vocab.unknown("EAT ME") == ["M"]
    assert vocab.encode("ME") == [3, 5]


@pytest.mark.parametrize(("tokens", "says"), [
    ({"|": 0, "a": 1}, "no pad token"),
    ({"<pad>": 0, "a": 1}, "no word delimiter '|'"),
    ({"<pad>": 0, "|": 2}, "ids must be 0 .. 1"),
    ({"<pad>": 0, "|": "1"}, "not"),
])
def test_bad_vocab_is_named(tmp_path, tokens, says):
    (tmp_path / "v.json").write_text(json.dumps(tokens))
    with pytest.raises(ConfigError, match=rf"v\.json: .*{says}"):
        CharVocab.from_file(tmp_path / "v.json")


def test_normaliser_and_built_vocabulary():
    norm = TextNormalizer()
    assert norm("  Hello,  World! ") == "hello world"
    assert TextNormalizer(case="keep", remove_chars="")("  Hi,  you ") == "Hi, you"
    assert TextNormalizer(case="upper")("it's  ok.") == "IT'S OK"
    vocab = CharVocab.build([norm("Ba  ab."), norm("C A")])
    assert vocab.tokens == {"<pad>": 0, "<unk>": 1, "|": 2, "a": 3, "b": 4, "c": 5}
    assert vocab.decode(vocab.encode("ba ab")) == "ba ab"
    with pytest.raises(ConfigError, match="word delimiter '\\|'"):
        CharVocab.build(["a|b"])


# ---------------------------------------------------------------------------- decoding


def _confident(T: int, V: int, rng: random.Random, top: float) -> torch.Tensor:
    """(T, V) log-probabilities whose most likely symbol has probability >= top at every frame."""
    rows = []
    for _ in range(T):
        winner, p = rng.randrange(V), rng.uniform(top, 1.0)
        rest = [rng.random() for _ in range(V - 1)]
        rest = [x / sum(rest) * (1 - p) for x in rest]
        rest.insert(winner, p)
        rows.append(rest)
    return torch.tensor(rows).log()


def test_greedy_collapses_repeats_then_drops_blanks():
    assert collapse([1, 1, 0, 1, 2, 2, 0, 0, 3], blank=0) == (1, 1, 2, 3)
    lp = torch.tensor([[0.1, 0.9, 0], [0.1, 0.9, 0], [0.8, 0.1, 0.1], [0.1, 0.9, 0], [0.2, 0, 0.8]]).clamp(1e-6).log()
    assert greedy_decode(lp, blank=0) == (1, 1, 2)


def test_beam_width_one_equals_greedy_on_confident_frames():
    """With every frame's top symbol above 3/4 the single kept prefix is greedy's at every step."""
    rng = random.Random(0)
    for _ in range(300):
        lp = _confident(rng.randrange(1, 12), rng.randrange(2, 6), rng, top=0.76)
        assert prefix_beam_search(lp, blank=0, beam_width=1)[0][0] == greedy_decode(lp, blank=0)


def test_beam_finds_the_more_likely_labelling_that_greedy_misses():
    # Two frames, blank 0.6 / "a" 0.4 each: the best path is "--" (P = 0.36, labelling ""), but
    # "a" has P = 0.4 * 0.4 + 0.4 * 0.6 + 0.6 * 0.4 = 0.64 over its three alignments.
    lp = torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log()
    assert greedy_decode(lp, blank=0) == ()
    (best, score), *_ = prefix_beam_search(lp, blank=0, beam_width=2)
    assert best == (1,) and score == pytest.approx(math.log(0.64))
    assert ctc_log_likelihood(lp, best, 0) == pytest.approx(math.log(0.64))
    assert ctc_log_likelihood(lp, (), 0) == pytest.approx(math.log(0.36))


def test_wide_beam_is_exact_against_brute_force():
    """P(labelling) summed over all V^T paths; a beam as wide as all prefixes finds the best."""
    torch.manual_seed(0)
    for _ in range(5):
        T, V = 4, 3
        lp = (torch.randn(T, V) * 1.5).log_softmax(-1)
        totals: dict[tuple[int, ...], float] = {}
        for path in itertools.product(range(V), repeat=T):
            p = math.exp(sum(lp[t, s].item() for t, s in enumerate(path)))
            label = collapse(list(path), 0)
            totals[label] = totals.get(label, 0.0) + p
        best = max(totals, key=totals.get)
        found, score = prefix_beam_search(lp, blank=0, beam_width=100)[0]
        assert found == best and score == pytest.approx(math.log(totals[best]), abs=1e-5)
        assert ctc_log_likelihood(lp, best, 0) == pytest.approx(math.log(totals[best]), abs=1e-5)


# ----------------------------------------------------------------------------- WER / CER


def test_error_rates_match_torchmetrics_and_sum_over_ranks():
    rng = random.Random(0)
    words = ["one", "two", "three", "four", "oh", "tree"]
    refs = [" ".join(rng.choices(words, k=rng.randrange(1, 6))) for _ in range(40)]
    hyps = [" ".join(w if rng.random() < 0.7 else rng.choice(words) for w in r.split()[: rng.randrange(0, 6)])
            for r in refs]
    for unit, reference in (("word", WordErrorRate()), ("char", CharErrorRate())):
        ours = ErrorRate(unit)
        ours.update(hyps, refs)
        reference.update(hyps, refs)
        assert ours.compute().item() == pytest.approx(reference.compute().item(), abs=1e-6)
        # two "ranks" with uneven shares: merged sums equal the rate over all utterances
        rank0, rank1 = ErrorRate(unit), ErrorRate(unit)
        rank0.update(hyps[:5], refs[:5])
        rank1.update(hyps[5:], refs[5:])
        mean_of_rates = (rank0.clone().compute().item() + rank1.clone().compute().item()) / 2
        rank0.merge_state(rank1)
        assert rank0.compute().item() == pytest.approx(ours.compute().item())
        assert mean_of_rates != pytest.approx(ours.compute().item())
    exact = ErrorRate("word")
    exact.update(["one two", ""], ["one three", "four"])
    assert exact.compute().item() == pytest.approx(2 / 3)  # 1 substitution + 1 deletion over 3 words


@pytest.mark.parametrize("unit, errors, total", [("word", 2, 2), ("char", 8, 8)])
def test_error_rate_takes_an_empty_reference(unit, errors, total):
    """A transcript of punctuation only normalises to "": its hypothesis counts as insertions and
    adds nothing to the reference length (jiwer 3.x raised here; pyproject asks for jiwer>=4)."""
    assert TextNormalizer()("?!") == ""
    rate = ErrorRate(unit)
    rate.update(["one", "two three"], ["", "two four"])  # words: 1 insertion + 1 substitution over 2;
    # characters: 3 insertions + 5 edits of "four" -> "three" over the 8 of "two four"
    assert (rate.errors.item(), rate.total.item()) == (errors, total)


# ------------------------------------------------------------------- speech recognition


@pytest.fixture()
def transcribed(tmp_path):
    return make_transcribed_audio(tmp_path / "asr", {"train": 6, "val": 3})


def _attach(task: SpeechRecognition, data: AudioDataModule) -> L.Trainer:
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(task)
    task.trainer = trainer
    trainer.datamodule = data
    return trainer


def _data(root: Path, **kwargs) -> AudioDataModule:
    return AudioDataModule(train_file=str(root / "train.jsonl"), val_file=str(root / "val.jsonl"),
                           task="transcription", batch_size=3, num_workers=0, **kwargs)


def test_the_data_builds_the_vocabulary_and_the_head_gets_its_size(transcribed):
    data = _data(transcribed)
    assert data.vocab.tokens == {"<pad>": 0, "<unk>": 1, "|": 2, "a": 3, "b": 4, "c": 5}
    assert data.vocab_size == 6  # linked into the model by the CLI
    task = SpeechRecognition(backbone="wav2vec2-test", vocab_size=data.vocab_size)
    assert task.net.lm_head.out_features == 6 and task.vocab is None
    _attach(task, data)
    task.setup("fit")
    data.setup("fit")
    assert task.vocab is data.vocab
    batch = next(iter(data.train_dataloader()))
    assert batch["labels"].shape[0] == 3 and batch["labels"].dtype == torch.long
    for ids, text in zip(batch["labels"], batch["text"]):
        assert data.vocab.decode(ids[ids >= 0].tolist()) == text  # the transcript's ids, -100 after its end
    loss, logits, frames = task.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and logits.shape[-1] == 6
    assert frames.tolist() == task.net.wav2vec2.output_lengths(batch["lengths"]).tolist()
    meta = task.export_metadata()
    assert meta["vocab"] == data.vocab.tokens and meta["spec"]["config"]["vocab_size"] == 6


@pytest.mark.parametrize("oov", ["error", "unk", "drop"])
def test_transcript_characters_outside_the_vocabulary(transcribed, oov, caplog):
    rows = (transcribed / "val.jsonl").read_text().splitlines()
    row = json.loads(rows[1])
    row["text"] = row["text"] + " x"
    rows[1] = json.dumps(row)
    (transcribed / "val.jsonl").write_text("\n".join(rows) + "\n")
    vocab = CharVocab.build(["abc"])
    vocab.save(transcribed / "vocab.json")
    data = _data(transcribed, vocab=str(transcribed / "vocab.json"), oov=oov)
    if oov == "error":
        with pytest.raises(DataError, match=r"val\.jsonl line 2 \(.*val_1\.flac\): the transcript .* \['x'\] outside"):
            data.setup("fit")
        return
    data.setup("fit")
    assert (data.report["train"]["oov"], data.report["val"]["oov"]) == (0, 1) and "outside the vocabulary" in caplog.text
    (reference,) = [r.text for r in data.records("val") if r.path.endswith("val_1.flac")]
    assert reference == (row["text"] if oov == "unk" else row["text"][:-2])
    assert data.targets.encode(reference)[-1] == (vocab.unk_id if oov == "unk" else vocab.tokens[reference[-1]])


def test_upper_case_vocabulary_gets_a_hint(transcribed):
    tokens = {"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4, "C": 5}
    (transcribed / "vocab.json").write_text(json.dumps(tokens))
    with pytest.raises(DataError, match="set data.case to 'upper'"):
        _data(transcribed, vocab=str(transcribed)).setup("fit")
    upper = _data(transcribed, vocab=str(transcribed), case="upper")
    upper.setup("fit")  # the lower-case transcripts fit once upper-cased
    assert (upper.report["train"]["oov"], upper.report["val"]["oov"]) == (0, 0)
    (transcribed / "vocab.json").write_text(json.dumps({"<pad>": 0, "|": 1, "a": 2}))
    with pytest.raises(ConfigError, match="oov is 'unk' but .* no unknown token"):
        _data(transcribed, vocab=str(transcribed), oov="unk")


@pytest.fixture()
def trained(transcribed) -> tuple[SpeechRecognition, dict]:
    """A task set up on the transcribed data, and its checkpoint as fit writes it."""
    data = _data(transcribed)
    task = SpeechRecognition(backbone="wav2vec2-test", vocab_size=data.vocab_size)
    _attach(task, data)
    task.setup("fit")
    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    return task, checkpoint


def test_the_vocabulary_of_the_checkpoint_being_fine_tuned_is_used(transcribed, trained, tmp_path):
    hf = tmp_path / "hf"  # an HF CTC folder (model.init_from, linked to data.preprocessor)
    hf.mkdir()
    CharVocab.build(["cab ba"]).save(hf / "vocab.json")
    assert _data(transcribed, preprocessor=str(hf)).vocab.source == str(hf / "vocab.json")
    task, checkpoint = trained
    torch.save(checkpoint, tmp_path / "ctc.ckpt")  # one of ours
    assert _data(transcribed, preprocessor=str(tmp_path / "ctc.ckpt")).vocab == task.vocab


def test_checkpoint_carries_the_vocabulary(transcribed, trained, tmp_path):
    task, checkpoint = trained
    fresh = SpeechRecognition(backbone="wav2vec2-test")  # no vocabulary, no data: predict from a checkpoint
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"])
    assert fresh.vocab == task.vocab
    x = torch.randn(2, 3000)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), task.eval()(x))
    other = CharVocab.build(["xyz"])
    other.save(tmp_path / "other.json")
    other_data = _data(transcribed, vocab=str(tmp_path / "other.json"), oov="drop")
    refused = SpeechRecognition(backbone="wav2vec2-test", vocab_size=other_data.vocab_size)
    _attach(refused, other_data)
    refused.setup("validate")
    with pytest.raises(CheckpointError, match="another vocabulary"):
        refused.on_load_checkpoint(checkpoint)
