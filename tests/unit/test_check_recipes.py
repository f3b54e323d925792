"""scripts/check_recipes.py: every recipe's header has a claim it can read, and a run that
misses its claim (or fails, or lacks the metric) fails the check and the exit status."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import REPO, load_script

check_recipes = load_script("scripts/check_recipes.py")

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_recipe_has_a_readable_check(config):
    conditions = check_recipes.parse_checks(config)
    if not conditions:  # "check: none (why)": only for what cannot run on a CPU without downloads
        assert re.search(r"^#\s*check:\s*none \(.*(GPU|download).*\)", config.read_text(), re.M), config
        return
    for cond in conditions:
        assert cond.metric.split("/")[0] in ("val", "test"), cond  # a results.json metric of a split
    # the claim is the human prose's too: the header's expected: text names each checked metric
    header = "\n".join(line for line in config.read_text().splitlines() if line.startswith("#"))
    expected = header.split("expected:", 1)[1]
    assert all(cond.metric.split("/")[1] in expected for cond in conditions)


def test_conditions_parse_and_compare(tmp_path):
    config = tmp_path / "r.yaml"
    config.write_text("# A recipe.\n#   check:    test/acc >= 0.80; val/wer < 3e-1\n#   check: test/f1 > 82\nmodel: {}\n"
                      "#   check: val/ignored >= 1\n")  # check lines below the header are not read
    acc, wer, f1 = check_recipes.parse_checks(config)
    assert (acc.metric, acc.op, acc.value) == ("test/acc", ">=", 0.8)
    assert (wer.metric, wer.op, wer.value) == ("val/wer", "<", 0.3)
    assert (f1.metric, f1.op, f1.value) == ("test/f1", ">", 82.0)
    assert acc.holds(0.80) and not acc.holds(0.7999) and not acc.holds(None)
    assert wer.holds(0.29) and not wer.holds(0.3)


@pytest.mark.parametrize("header", ["# A recipe\n#   expected: test/acc >= 0.8\n", "#   check: test/acc = 0.8\n",
                                    "#   check: test/acc >= high\n", "#   check: none\n"])
def test_missing_or_unreadable_check_names_the_file(tmp_path, header):
    config = tmp_path / "bad.yaml"
    config.write_text(header + "model: {}\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        check_recipes.parse_checks(config)


def test_check_none_with_a_reason_runs_nothing(tmp_path):
    config = tmp_path / "gpu.yaml"
    config.write_text("#   check:    none (needs a downloaded checkpoint and a GPU)\nmodel: {}\n")
    assert check_recipes.parse_checks(config) == []


def test_dry_run_lists_every_recipe(capsys):
    assert check_recipes.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(c.stem in out for c in CONFIGS)
    assert "test/acc >= 0.8" in out


def test_unknown_recipe_is_an_error(capsys):
    assert check_recipes.main(["--dry-run", "--only", "no_such_recipe"]) == 2
    assert "no_such_recipe" in capsys.readouterr().err


def fake_runs(monkeypatch, outcomes: dict[str, tuple[dict | None, int]], seen: list) -> None:
    """Replace the subprocess run by one that writes the given metrics (None: no results.json)."""
    def run_recipe(config: Path, run_dir: Path, overrides: list[str]):
        seen.append((config.stem, run_dir, overrides))
        metrics, code = outcomes[config.stem]
        run_dir.mkdir(parents=True)
        if metrics is not None:
            (run_dir / "results.json").write_text(json.dumps({"metrics": metrics}))
            (run_dir / "checkpoints").mkdir()
            (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"")
        return check_recipes.Outcome(metrics, 61.0, 119.6, code)

    monkeypatch.setattr(check_recipes, "run_recipe", run_recipe)


def test_a_run_that_meets_its_claim_passes(tmp_path, monkeypatch, capsys):
    seen = []
    fake_runs(monkeypatch, {"convnext_fashion_mnist": ({"test/acc": 0.842}, 0)}, seen)
    code = check_recipes.main(["--only", "convnext_fashion_mnist", "--root", str(tmp_path), "--", "--seed_everything", "1"])
    assert code == 0
    assert seen == [("convnext_fashion_mnist", tmp_path / "convnext_fashion_mnist", ["--seed_everything", "1"])]
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith("convnext_fashion_mnist ")][-1].split()
    assert row == ["convnext_fashion_mnist", "test/acc", ">=", "0.8", "0.842", "pass", "1m01s", "2m00s"]
    assert "1 of 1 checks passed" in out


def test_a_planted_wrong_claim_fails(tmp_path, monkeypatch, capsys):
    """The same measured figures against a claim they miss: the check fails and so does the exit status."""
    configs = tmp_path / "configs" / "image_classification"
    configs.mkdir(parents=True)
    text = (REPO / "configs/image_classification/convnext_fashion_mnist.yaml").read_text()
    assert "check:    test/acc >= 0.80" in text
    (configs / "convnext_fashion_mnist.yaml").write_text(text.replace("test/acc >= 0.80", "test/acc >= 0.90"))
    monkeypatch.setattr(check_recipes, "CONFIGS", tmp_path / "configs")
    monkeypatch.setattr(check_recipes, "REPO_ROOT", tmp_path)
    fake_runs(monkeypatch, {"convnext_fashion_mnist": ({"test/acc": 0.842}, 0)}, [])
    assert check_recipes.main(["--root", str(tmp_path / "runs")]) == 1
    out = capsys.readouterr().out
    assert ">= 0.9" in out and "0.842" in out and "FAIL" in out and "0 of 1 checks passed; 1 FAILED" in out


def test_failed_runs_and_missing_metrics_fail(tmp_path, monkeypatch, capsys):
    fake_runs(monkeypatch, {"vit_fashion_mnist": (None, 1), "minilm_debian_sections": ({"test/acc": 0.9}, 0)}, [])
    code = check_recipes.main(["--only", "vit_fashion_mnist", "minilm_debian_sections", "--root", str(tmp_path)])
    assert code == 1
    out = capsys.readouterr().out.split("\n\n")[-2]  # the table
    rows = {tuple(line.split()[:2]): line for line in out.splitlines()[1:]}
    assert "FAIL (exit 1)" in rows[("vit_fashion_mnist", "test/acc")]
    assert " pass " in rows[("minilm_debian_sections", "test/acc")] + " "
    assert "FAIL" in rows[("minilm_debian_sections", "test/f1")]  # no test/f1 in its results: not a pass


def test_a_recipe_that_starts_from_another_runs_it_first(tmp_path, monkeypatch, capsys):
    """`# init_from: task/parent.yaml`: the parent runs first (when not checked itself) and the
    child gets --model.init_from with the parent's best.ckpt; a parent that is no recipe is an error."""
    configs = tmp_path / "configs"
    (configs / "pre").mkdir(parents=True)
    (configs / "fine").mkdir()
    (configs / "pre" / "parent.yaml").write_text("#   check: val/loss <= 3\n#   expected: val/loss <= 3\nmodel: {}\n")
    (configs / "fine" / "child.yaml").write_text("#   init_from: pre/parent.yaml\n#   check: test/acc >= 0.5\n"
                                                 "#   expected: test/acc >= 0.5\nmodel: {}\n")
    monkeypatch.setattr(check_recipes, "CONFIGS", configs)
    monkeypatch.setattr(check_recipes, "REPO_ROOT", tmp_path)
    seen = []
    fake_runs(monkeypatch, {"parent": ({"val/loss": 2.0}, 0), "child": ({"test/acc": 0.6}, 0)}, seen)
    root = tmp_path / "runs"
    assert check_recipes.main(["--only", "child", "--root", str(root), "--", "--seed_everything", "1"]) == 0
    best = str(root / "parent" / "checkpoints" / "best.ckpt")
    assert seen == [("parent", root / "parent", ["--seed_everything", "1"]),
                    ("child", root / "child", ["--model.init_from", best, "--seed_everything", "1"])]
    assert "1 of 1 checks passed" in capsys.readouterr().out

    (configs / "fine" / "child.yaml").write_text("#   init_from: pre/missing.yaml\n#   check: test/acc >= 0.5\nmodel: {}\n")
    with pytest.raises(ValueError, match="child.yaml: init_from names pre/missing.yaml"):
        check_recipes.parse_init_from(configs / "fine" / "child.yaml")
    assert check_recipes.main(["--dry-run", "--only", "child"]) == 2
