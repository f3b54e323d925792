"""MaskedLanguageModeling: the loss and perplexity on fixed cases, vocabulary linking and checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lit_tasks.errors import ConfigError
from lit_tasks.tasks import MaskedLanguageModeling
from lit_tasks.metrics.perplexity import Perplexity
from lit_tasks import zoo

VOCAB = 40


def batch(seed: int = 0, nsp: bool = False, B: int = 4, T: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (B, T), generator=g)
    attention_mask = torch.ones(B, T, dtype=torch.long)
    attention_mask[0, -3:] = 0
    labels = torch.full((B, T), -100)
    chosen = torch.rand(B, T, generator=g) < 0.3
    chosen[:, 0] = True
    chosen &= attention_mask.bool()
    labels[chosen] = input_ids[chosen]
    input_ids[chosen] = 4  # [MASK]
    out = {"input_ids": input_ids, "attention_mask": attention_mask,
           "token_type_ids": torch.zeros(B, T, dtype=torch.long), "labels": labels}
    if nsp:
        out["next_sentence_label"] = torch.randint(0, 2, (B,), generator=g)
    return out


def task(**kw) -> MaskedLanguageModeling:
    torch.manual_seed(0)
    return MaskedLanguageModeling(**({"backbone": "bert-test", "vocab_size": VOCAB} | kw))


def test_perplexity_metric_is_exp_of_the_pooled_mean_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = [torch.randn(n, 7, generator=g) * 3 for n in (5, 1, 12)]
    targets = [torch.randint(0, 7, (n,), generator=g) for n in (5, 1, 12)]
    metric = Perplexity()
    for x, y in zip(logits, targets):  # batches of unequal size: not a mean of batch means
        metric.update(F.cross_entropy(x, y, reduction="sum"), len(y))
    expected = math.exp(F.cross_entropy(torch.cat(logits), torch.cat(targets)).item())
    assert metric.compute().item() == pytest.approx(expected, rel=1e-5)


def test_step_loss_and_metrics_equal_the_full_model_outputs():
    model = task().eval()
    batches = [batch(0), batch(1, B=3, T=9)]
    full_logits, full_labels = [], []
    with torch.no_grad():
        for b in batches:
            model.step(b, "val")
            out = model.net(b["input_ids"], b["attention_mask"], b["token_type_ids"]).prediction_logits  # (B, T, V)
            keep = b["labels"] != -100
            full_logits.append(out[keep])
            full_labels.append(b["labels"][keep])
    logits, labels = torch.cat(full_logits), torch.cat(full_labels)
    ce = F.cross_entropy(logits, labels)
    assert model.perplexity["val_perplexity"].compute().item() == pytest.approx(math.exp(ce.item()), rel=1e-5)
    acc = (logits.argmax(-1) == labels).float().mean().item()
    assert model.metrics["val_metrics"]["mlm_acc"].compute().item() == pytest.approx(acc)
    with torch.no_grad():
        loss = model.step(batches[0], "test")
        keep = batches[0]["labels"] != -100
        assert loss.item() == pytest.approx(F.cross_entropy(full_logits[0], batches[0]["labels"][keep]).item(), rel=1e-5)


def test_training_lowers_the_loss_and_nsp_adds_its_term():
    model = task(nsp=True)
    b = batch(0, nsp=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model.step(b, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    with torch.no_grad():
        mlm, nsp = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], b["labels"])
        total = model.step(b, "val")
    keep = b["labels"] != -100
    expected = F.cross_entropy(mlm, b["labels"][keep]) + F.cross_entropy(nsp, b["next_sentence_label"])
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ConfigError, match="next_sentence_label"):
        model.step(batch(0), "val")


def test_without_nsp_the_pooler_and_nsp_head_are_frozen():
    model = task()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"net.bert.pooler.weight", "net.bert.pooler.bias", "net.nsp.weight", "net.nsp.bias"}
    loss = model.step(batch(0), "train")
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_vocab_size_sizes_a_new_model_and_must_match_a_pretrained_one(tmp_path):
    model = task(vocab_size=57)
    assert model.net.bert.embeddings.word_embeddings.weight.shape[0] == 57 and model.net.mlm.bias.shape == (57,)
    with pytest.raises(ConfigError, match="backbone_config.vocab_size is 30"):
        task(backbone_config={"vocab_size": 30}, vocab_size=57)
    saved = zoo.build("bert-test", "pretraining")
    zoo.save_pretrained(saved, tmp_path / "ckpt")
    with pytest.raises(ConfigError, match=r"vocabulary of 99 tokens but the tokenizer .* has 57"):
        MaskedLanguageModeling(init_from=str(tmp_path / "ckpt"), vocab_size=57)
    loaded = MaskedLanguageModeling(init_from=str(tmp_path / "ckpt"), vocab_size=99)
    assert torch.equal(loaded.net.mlm.dense.weight, saved.mlm.dense.weight)
