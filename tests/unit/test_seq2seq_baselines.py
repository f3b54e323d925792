"""scripts/summarization_baselines.py and scripts/translation_baselines.py compute what their
docstrings say, on tiny datasets written here; scripts/make_seq2seq_demo_data.py parses and
pairs descriptions as documented; the bundled demo_data/debian_{summaries,translations} files
are well formed."""

from __future__ import annotations

import argparse
import json
from collections import Counter

import pytest
from helpers import REPO, load_script

from lit_tasks.errors import DataError
from lit_tasks.metrics.rouge import rouge_scores
from lit_tasks.metrics.translation import bleu_chrf


summ = load_script("scripts/summarization_baselines.py")
trans = load_script("scripts/translation_baselines.py")
make = load_script("scripts/make_seq2seq_demo_data.py")


def write_jsonl(path, pairs):
    path.write_text("".join(json.dumps({"package": f"p{i}", "source": s, "target": t}) + "\n"
                            for i, (s, t) in enumerate(pairs)))


# --- summarization -------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "lead"), [
    ("First one here. Second one.", "First one here."),
    ("Is it? Yes! No.", "Is it?"),
    ("Tools, e.g. grep and sed. More.", "Tools, e.g. grep and sed."),  # no break after e.g.
    ("A list without a full stop\nNext paragraph. Two.", "A list without a full stop"),  # line = paragraph
    ("Version 1.2 is out. Then.", "Version 1.2 is out."),  # a point inside a number is no break
])
def test_lead_sentence(source, lead):
    assert summ.lead_sentence(source) == lead


def test_first_n_is_chosen_on_val_by_rouge_l(tmp_path):
    # every target is the source's first three words: N = 3 is the only perfect choice
    pairs = [("alpha beta gamma delta epsilon zeta. More text.", "alpha beta gamma"),
             ("one two three four five six seven. And more.", "one two three"),
             ("red green blue cyan magenta. Yellow.", "red green blue")]
    n, scores = summ.choose_n([s for s, _ in pairs], [t for _, t in pairs], list(range(1, 8)))
    assert n == 3 and scores["rougeL"] == pytest.approx(100.0)

    write_jsonl(tmp_path / "val.jsonl", pairs)
    write_jsonl(tmp_path / "test.jsonl", [("a b c d e f. G h.", "a b x")])
    rows = {(r["baseline"], r["split"]): r for r in summ.main(["--data", str(tmp_path), "--n", "1", "2", "3", "4"])}
    assert rows["first N words", "val"]["n"] == 3
    expected = rouge_scores(["a b c"], ["a b x"])  # the test figure is N = 3 applied to test
    assert rows["first N words", "test"]["rouge1"] == pytest.approx(expected["rouge1"], abs=0.01)
    assert rows["lead sentence", "test"]["rougeL"] == pytest.approx(
        rouge_scores(["a b c d e f."], ["a b x"])["rougeL"], abs=0.01)


def test_empty_target_is_a_data_error_naming_the_line(tmp_path):
    file = tmp_path / "val.jsonl"
    file.write_text('{"source": "s", "target": "t"}\n{"source": "s", "target": " "}\n')
    with pytest.raises(DataError, match=r"line 2: column 'target'"):
        summ.read_pairs(file)


# --- translation ---------------------------------------------------------------------------

TRAIN = [  # "für" is in every pair: raw co-occurrence counts would tie it with the right word
    ("tool for network", "Werkzeug für Netzwerk"),
    ("tool for graphics", "Werkzeug für Grafik"),
    ("library for network", "Bibliothek für Netzwerk"),
    ("library for graphics", "Bibliothek für Grafik"),
    ("daemon for mail", "Dienst für E-Mail"),
]


def test_dice_dictionary_translates_aligned_words_and_copies_unknown_ones():
    d = trans.DiceDictionary([s for s, _ in TRAIN], [t for _, t in TRAIN], min_count=2)
    assert d.entries["tool"] == ("Werkzeug", pytest.approx(1.0))  # 2*2 / (2+2), not "für" (2*2 / (2+5))
    assert d.entries["for"] == ("für", pytest.approx(1.0))
    assert "mail" not in d.entries  # seen once: under min_count
    assert d.translate("Library for (graphics) Mail.", min_dice=0.5) == "Bibliothek für (Grafik) Mail."
    assert d.translate("tool for daemon", min_dice=1.1) == "tool for daemon"  # above every Dice: copy


def test_translation_main_reports_copy_and_the_val_chosen_threshold(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", TRAIN)
    write_jsonl(tmp_path / "val.jsonl", [("graphics tool", "Grafik Werkzeug")])
    write_jsonl(tmp_path / "test.jsonl", [("network library for graphics", "Netzwerk Bibliothek für Grafik")])
    rows = {(r["baseline"], r["split"]): r for r in trans.main(["--data", str(tmp_path), "--min-dice", "0.9", "1.5"])}
    assert rows["copy", "test"]["chrf"] == pytest.approx(
        bleu_chrf(["network library for graphics"], ["Netzwerk Bibliothek für Grafik"])["chrf"], abs=0.01)
    assert rows["word by word", "val"]["min_dice"] == 0.9  # 1.5 copies everything: worse chrF
    assert rows["word by word", "test"]["bleu"] == pytest.approx(100.0)


# --- the generator -------------------------------------------------------------------------

EN = "a synopsis\n First paragraph, line one\n line two.\n .\n Second paragraph."


ACPITAIL = ("Show ACPI information in a tail-like style\n"  # Translation-en of Debian 12, package acpitail
            " acpitail shows ACPI status information about battery, fan and\n"
            " temperature in a tail-like way. As soon as a value changes, the new\n"
            " value gets appended to the current output.")


def test_description_parts_and_md5():
    assert make.description_parts(EN) == ("a synopsis", ["First paragraph, line one line two.", "Second paragraph."])
    assert make.description_md5(ACPITAIL) == "9526bed1a52b5851f7cd0355f406f2c3"  # its Description-md5


def test_translation_pairs_follow_the_md5_and_drop_untranslated():
    english = {"m-old": "old synopsis\n Old.", "m-new": "new synopsis\n New.", "m-same": "GNOME\n Text."}
    german = {"pkg": [("m-old", "alte Kurzbeschreibung\n Alt."), ("m-new", "neue Kurzbeschreibung\n Neu.")],
              "same": [("m-same", "GNOME\n Text.")]}
    packages = {"pkg": ("src", "m-new"), "same": ("same", "m-same")}
    counts = Counter()
    args = argparse.Namespace(paragraphs=False)
    rows = make.translation_rows(english, german, packages, args, counts)
    assert rows == [{"package": "pkg", "source": "new synopsis", "target": "neue Kurzbeschreibung"}]
    assert counts["translations: German equals English (untranslated)"] == 1


# --- the bundled files ---------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["debian_summaries", "debian_translations"])
def test_bundled_files_have_the_fields_and_no_empty_text(folder):
    sources = {}
    for split in ("train", "val", "test"):
        file = REPO / "demo_data" / folder / f"{split}.jsonl"
        rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines()]
        assert len(rows) >= 400, file
        for i, row in enumerate(rows):
            assert set(row) == {"package", "source", "target"}, (file, i)
            assert all(isinstance(row[k], str) and row[k].strip() for k in row), (file, i)
            assert row["source"] != row["target"], (file, i)
        sources[split] = {r["source"] for r in rows}
    assert not (sources["train"] & sources["val"]) and not (sources["train"] & sources["test"])
    assert sum(f.stat().st_size for f in (REPO / "demo_data" / folder).glob("*.jsonl")) < 2.6e6
