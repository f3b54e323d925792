"""Write the bundled sequence-to-sequence samples from Debian package descriptions.

- ``demo_data/debian_summaries/``: summarization, a package's long description -> its one-line
  synopsis (English, from the ``Translation-en`` index);
- ``demo_data/debian_translations/``: translation English -> German, a package's English synopsis
  -> its German synopsis (``Translation-de``, the Debian Description Translation Project).

Both are JSONL, one object a line, ``{"package", "source", "target"}``, sorted by package name.
The indexes are read with the functions of ``scripts/make_text_demo_data.py`` (apt-helper
``cat-file``, deb822 stanzas). Debian container images switch translations off
(``/etc/apt/apt.conf.d/docker-no-languages`` sets ``Acquire::Languages "none"``); the ``-o``
option below overrides it for one run, without editing that file::

    apt-get update -o Acquire::Languages=en,de
    python scripts/make_seq2seq_demo_data.py      # the bundled sizes; --*-rows 0 for all rows

Choices (each count is printed):

- **Pairing is by ``Description-md5``**: the md5 of the English description (its text plus a
  newline), which every Translation file carries. English entries whose md5 does not match their
  own text are dropped; a German entry is paired only with the English text of its md5, so a
  German translation of an older English description is never paired with a newer one.
- **One description per package**: the one whose md5 the ``Packages`` index lists (later suites
  win), else the first one in the Translation index.
- **Summaries**: the source is the long description, one paragraph a line (lines of a paragraph
  joined by single spaces, paragraphs by ``"\\n"``), kept when it has ``--min-words`` to
  ``--max-words`` words (25..150) and at least ``--min-sentences`` (2) sentence ends
  (``.``, ``!`` or ``?`` before whitespace or the end). The target is the synopsis as written.
- **Translations**: synopsis pairs; with ``--paragraphs`` also the long descriptions' paragraphs
  paired by position when English and German have the same number of paragraphs (those rows get
  a ``part`` field, ``"synopsis"`` or ``"p1"``, ``"p2"``, ...). A pair whose German equals its
  English (untranslated) is dropped.
- **Duplicates**: a source text is kept once, under the first package by name (binaries of one
  source often share a description), so no source is in two splits.
- **Splits by source package**: a stable hash (SHA-256) of the *source* package name (from
  ``Packages``; the binary's own name when it is not listed) puts ``--val-fraction`` (7.5%) in
  val, ``--test-fraction`` (7.5%) in test, the rest in train: ``libfoo1`` and ``libfoo-dev``
  never straddle train and test. Within a split, the rows kept under a ``--*-rows`` cap are the
  first by a hash of the package name. The same indexes rewrite the same bytes.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_text_demo_data import LISTS, read_index, stable_hash, stanzas  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SUMMARIES_OUT = REPO_ROOT / "demo_data" / "debian_summaries"
TRANSLATIONS_OUT = REPO_ROOT / "demo_data" / "debian_translations"
SPLITS = ("train", "val", "test")
SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def description_parts(value: str) -> tuple[str, list[str]]:
    """A deb822 description field -> (synopsis, paragraphs). Continuation lines start with a
    space; a line " ." separates paragraphs; whitespace inside a paragraph becomes one space."""
    lines = value.split("\n")
    paragraphs, current = [], []
    for line in lines[1:]:
        if line.strip() == ".":
            paragraphs.append(" ".join(current))
            current = []
        else:
            current.append(line)
    paragraphs.append(" ".join(current))
    paragraphs = [re.sub(r"\s+", " ", p).strip() for p in paragraphs]
    return lines[0].strip(), [p for p in paragraphs if p]


def description_md5(text: str) -> str:
    """The ``Description-md5`` APT computes: md5 of the English description plus a newline."""
    return hashlib.md5((text + "\n").encode("utf-8")).hexdigest()


def read_english(paths: list[str], counts: Counter) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Translation-en -> ({md5: description}, {package: [md5, ...] in index order}); entries whose
    md5 does not match their text are dropped and counted."""
    texts: dict[str, str] = {}
    by_package: dict[str, list[str]] = {}
    for path in paths:
        for s in stanzas(read_index(path)):
            md5, text = s.get("Description-md5"), s.get("Description-en")
            if md5 is None or text is None or "Package" not in s:
                counts["en: stanza without Package/Description-md5/Description-en"] += 1
                continue
            if description_md5(text) != md5:
                # e.g. a space after the synopsis, which the shared stanza reader strips
                counts["en: Description-md5 does not match the text as read"] += 1
                continue
            texts[md5] = text
            by_package.setdefault(s["Package"], []).append(md5)
    return texts, by_package


def read_german(paths: list[str], english: dict[str, str], counts: Counter) -> dict[str, list[tuple[str, str]]]:
    """Translation-de -> {package: [(md5, German description), ...]}, only translations of an
    English description that Translation-en holds (the md5 names the English text translated)."""
    by_package: dict[str, list[tuple[str, str]]] = {}
    for path in paths:
        for s in stanzas(read_index(path)):
            md5, text = s.get("Description-md5"), s.get("Description-de")
            if md5 is None or text is None or "Package" not in s:
                counts["de: stanza without Package/Description-md5/Description-de"] += 1
                continue
            if md5 not in english:
                counts["de: translates an English description not in Translation-en (outdated)"] += 1
                continue
            by_package.setdefault(s["Package"], []).append((md5, text))
    return by_package


def read_packages(paths: list[str]) -> dict[str, tuple[str, str]]:
    """Packages indexes -> {package: (source package, Description-md5)}; later suites win."""
    info: dict[str, tuple[str, str]] = {}
    for path in paths:
        for s in stanzas(read_index(path)):
            if "Package" in s and "Description-md5" in s:
                source = s.get("Source", s["Package"]).split(" ")[0]  # "Source: foo (1.2)" -> foo
                info[s["Package"]] = (source, s["Description-md5"])
    return info


def pick_md5(package: str, candidates: list[str], packages: dict[str, tuple[str, str]]) -> str:
    """The description the Packages index names for ``package``, else the first candidate."""
    current = packages.get(package, (None, None))[1]
    return current if current in candidates else candidates[0]


def split_of(source_package: str, val_fraction: float, test_fraction: float) -> str:
    u = stable_hash("source:" + source_package) / 2**64
    return "val" if u < val_fraction else "test" if u < val_fraction + test_fraction else "train"


def keep_first_per_source(rows: list[dict], counts: Counter, what: str) -> list[dict]:
    """Rows in package order; a row whose source text was seen before is dropped and counted."""
    seen, kept = set(), []
    for row in sorted(rows, key=lambda r: (r["package"], r.get("part", ""))):
        if row["source"] in seen:
            counts[f"{what}: duplicate source text (kept under the first package)"] += 1
            continue
        seen.add(row["source"])
        kept.append(row)
    return kept


def summary_rows(english: dict[str, str], en_packages: dict[str, list[str]],
                 packages: dict[str, tuple[str, str]], args, counts: Counter) -> list[dict]:
    rows = []
    for package in sorted(en_packages):
        synopsis, paragraphs = description_parts(english[pick_md5(package, en_packages[package], packages)])
        source = "\n".join(paragraphs)
        words, sentences = len(source.split()), len(SENTENCE_END.findall(source))
        if not synopsis:
            counts["summaries: empty synopsis"] += 1
        elif words < args.min_words:
            counts[f"summaries: long description under {args.min_words} words"] += 1
        elif words > args.max_words:
            counts[f"summaries: long description over {args.max_words} words"] += 1
        elif sentences < args.min_sentences:
            counts[f"summaries: under {args.min_sentences} sentences"] += 1
        else:
            rows.append({"package": package, "source": source, "target": synopsis})
    return keep_first_per_source(rows, counts, "summaries")


def translation_rows(english: dict[str, str], german: dict[str, list[tuple[str, str]]],
                     packages: dict[str, tuple[str, str]], args, counts: Counter) -> list[dict]:
    rows = []
    for package in sorted(german):
        translations = dict(german[package])
        md5 = pick_md5(package, list(translations), packages)
        en_synopsis, en_paragraphs = description_parts(english[md5])
        de_synopsis, de_paragraphs = description_parts(translations[md5])
        pairs = [("synopsis", en_synopsis, de_synopsis)]
        if args.paragraphs:
            if len(en_paragraphs) == len(de_paragraphs):
                pairs += [(f"p{i + 1}", e, d) for i, (e, d) in enumerate(zip(en_paragraphs, de_paragraphs))]
            else:
                counts["translations: paragraphs not paired (different paragraph counts)"] += 1
        for part, en, de in pairs:
            if not en or not de:
                counts["translations: empty English or German text"] += 1
            elif en == de:
                counts["translations: German equals English (untranslated)"] += 1
            else:
                row = {"package": package, "source": en, "target": de}
                rows.append({**row, "part": part} if args.paragraphs else row)
    return keep_first_per_source(rows, counts, "translations")


def write_splits(rows: list[dict], packages: dict[str, tuple[str, str]], out: Path,
                 caps: dict[str, int], args) -> None:
    """Split by source package, keep the first ``caps[split]`` rows by package hash (0: all),
    write ``out/<split>.jsonl`` sorted by package."""
    pools: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for row in rows:
        source = packages.get(row["package"], (row["package"], None))[0]
        pools[split_of(source, args.val_fraction, args.test_fraction)].append(row)
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        pool = pools[split]
        chosen = sorted(pool, key=lambda r: (stable_hash(r["package"]), r.get("part", "")))
        chosen = chosen[: caps[split]] if caps[split] else chosen
        chosen.sort(key=lambda r: (r["package"], r.get("part", "")))
        file = out / f"{split}.jsonl"
        with open(file, "w", encoding="utf-8") as f:
            for row in chosen:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{file}: {len(chosen)} of {len(pool)} rows, {file.stat().st_size / 1e6:.2f} MB")


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lists", type=Path, default=LISTS, help="APT's lists folder")
    p.add_argument("--summaries-out", type=Path, default=SUMMARIES_OUT)
    p.add_argument("--translations-out", type=Path, default=TRANSLATIONS_OUT)
    p.add_argument("--min-words", type=int, default=25, help="summaries: shortest long description kept")
    p.add_argument("--max-words", type=int, default=150, help="summaries: longest long description kept")
    p.add_argument("--min-sentences", type=int, default=2, help="summaries: fewest sentence ends kept")
    p.add_argument("--paragraphs", action="store_true", help="translations: add paragraph pairs")
    p.add_argument("--val-fraction", type=float, default=0.075)
    p.add_argument("--test-fraction", type=float, default=0.075)
    p.add_argument("--summary-train-rows", type=int, default=4000, help="0: all (the caps keep the bundle small)")
    p.add_argument("--summary-eval-rows", type=int, default=500, help="val and test each; 0: all")
    p.add_argument("--translation-train-rows", type=int, default=0, help="0: all")
    p.add_argument("--translation-eval-rows", type=int, default=0, help="val and test each; 0: all")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    indexes = {kind: sorted(glob.glob(str(args.lists / pattern))) for kind, pattern in (
        ("en", "*_i18n_Translation-en*"), ("de", "*_i18n_Translation-de*"), ("packages", "*_binary-*_Packages*"))}
    missing = [kind for kind, paths in indexes.items() if not paths]
    if missing:
        print(f"No {', '.join(missing)} index under {args.lists}.\n"
              "Fetch the indexes with:  apt-get update -o Acquire::Languages=en,de\n"
              "(Debian container images turn translations off in /etc/apt/apt.conf.d/docker-no-languages.)",
              file=sys.stderr)
        return 1
    counts: Counter = Counter()
    english, en_packages = read_english(indexes["en"], counts)
    german = read_german(indexes["de"], english, counts)
    packages = read_packages(indexes["packages"])
    print(f"read {len(english)} English descriptions of {len(en_packages)} packages, German ones of "
          f"{len(german)} packages, {len(packages)} packages from {sum(map(len, indexes.values()))} indexes")

    summaries = summary_rows(english, en_packages, packages, args, counts)
    translations = translation_rows(english, german, packages, args, counts)
    for what, n in sorted(counts.items()):
        print(f"  {what}: {n}")
    print(f"{len(summaries)} summary pairs, {len(translations)} translation pairs")
    eval_caps = lambda train, other: {"train": train, "val": other, "test": other}  # noqa: E731
    write_splits(summaries, packages, args.summaries_out,
                 eval_caps(args.summary_train_rows, args.summary_eval_rows), args)
    write_splits(translations, packages, args.translations_out,
                 eval_caps(args.translation_train_rows, args.translation_eval_rows), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
