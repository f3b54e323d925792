"""Write the bundled text-classification sample: Debian package description -> archive section.

Source: the APT indexes of the Debian archive on this machine, after ``apt-get update``:

- ``*_i18n_Translation-en*`` (the Debian Description Translation Project's English index):
  ``Package``, ``Description-md5`` and ``Description-en`` (a one-line synopsis and a long
  description);
- ``*_binary-<arch>_Packages*``: each package's ``Section``, ``Source`` and ``Description-md5``.

Both are read with ``/usr/lib/apt/apt-helper cat-file``, which undoes APT's compression (.lz4,
.xz, .gz). Docker images of Debian usually switch the translation index off
(``/etc/apt/apt.conf.d/docker-no-languages``); fetch it once with::

    apt-get update -o Acquire::Languages=en
    python scripts/make_text_demo_data.py    # defaults: 375 / 63 / 63 per class, 36 words

Output (what ``TextDataModule(train_file=..., val_file=..., test_file=...)`` reads)::

    demo_data/debian_sections/{train,val,test}.csv       columns: package,text,label

``text`` is the synopsis followed by the long description, on one line (paragraph marks and
line breaks become single spaces), cut to its first ``--max-words`` words (36: about half the
texts are cut, and the three CSVs stay near 2 MB); the count is printed. ``label`` is the section without its ``contrib/`` or
``non-free/`` prefix. Only the ``--classes`` most frequent sections are kept.

Descriptions are de-duplicated: identical texts under one section are kept once; identical
texts under different sections are dropped (they cannot be told apart); both counts are
printed. Splits are drawn by *source package* (a hash of its name), so the binaries built from
one source (``libfoo1``, ``libfoo-dev``, ``libfoo-doc`` share most of their text) never straddle
train and test. Within each split and class the rows are the first ``--*-per-class`` by a hash
of the package name: the selection is deterministic, and re-running the script on the same
indexes rewrites the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

LISTS = Path("/var/lib/apt/lists")
APT_HELPER = "/usr/lib/apt/apt-helper"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "demo_data" / "debian_sections"


def read_index(path: str) -> str:
    """An APT index file as text, decompressed by apt-helper (it knows every APT compression)."""
    out = subprocess.run([APT_HELPER, "cat-file", path], check=True, capture_output=True)
    return out.stdout.decode("utf-8", errors="replace")


def stanzas(text: str):
    """deb822 paragraphs -> dicts; continuation lines (leading space) are kept, newline-joined."""
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.split("\n"):
            if not line:
                continue
            if line[0] in " \t" and key is not None:
                fields[key] += "\n" + line
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields:
            yield fields


def flatten_description(value: str) -> tuple[str, str]:
    """(synopsis, long description on one line). Long-description lines start with a space;
    " ." is an empty line (paragraph break)."""
    lines = value.split("\n")
    synopsis = lines[0].strip()
    body = []
    for line in lines[1:]:
        line = line[1:] if line.startswith(" ") else line
        if line.strip() == ".":
            continue
        body.append(line.strip())
    return synopsis, re.sub(r"\s+", " ", " ".join(body)).strip()


def stable_hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lists", type=Path, default=LISTS, help="APT's lists folder")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--classes", type=int, default=16, help="keep the N most frequent sections")
    p.add_argument("--train-per-class", type=int, default=375)
    p.add_argument("--val-per-class", type=int, default=63)
    p.add_argument("--test-per-class", type=int, default=63)
    p.add_argument("--max-words", type=int, default=36,
                   help="keep the first N words of each text (0: all); keeps the bundled sample near 2 MB")
    args = p.parse_args(argv)

    translations = sorted(glob.glob(str(args.lists / "*_i18n_Translation-en*")))
    packages = sorted(glob.glob(str(args.lists / "*_binary-*_Packages*")))
    if not translations or not packages:
        print(
            f"No {'Translation-en' if not translations else 'Packages'} index under {args.lists}.\n"
            "Fetch the indexes with:  apt-get update -o Acquire::Languages=en\n"
            "(Debian container images turn translations off in /etc/apt/apt.conf.d/docker-no-languages.)",
            file=sys.stderr,
        )
        return 1

    descriptions: dict[str, str] = {}  # Description-md5 -> Description-en
    for path in translations:
        for s in stanzas(read_index(path)):
            if "Description-md5" in s and "Description-en" in s:
                descriptions.setdefault(s["Description-md5"], s["Description-en"])
    info: dict[str, tuple[str, str, str]] = {}  # package -> (section, source, md5); later suites win
    for path in packages:
        for s in stanzas(read_index(path)):
            if "Package" in s and "Section" in s and "Description-md5" in s:
                source = s.get("Source", s["Package"]).split(" ")[0]  # "Source: foo (1.2)" -> foo
                info[s["Package"]] = (s["Section"].split("/")[-1], source, s["Description-md5"])
    print(f"read {len(descriptions)} English descriptions and {len(info)} packages from "
          f"{len(translations)} Translation-en and {len(packages)} Packages indexes")

    counts = Counter()
    by_text: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # text -> [(package, section, source)]
    for package in sorted(info):
        section, source, md5 = info[package]
        if md5 not in descriptions:
            counts["no English description"] += 1
            continue
        synopsis, body = flatten_description(descriptions[md5])
        if not body:
            counts["no long description"] += 1
            continue
        by_text[f"{synopsis} {body}"].append((package, section, source))
    rows = []
    for text, owners in by_text.items():
        sections = {s for _, s, _ in owners}
        if len(sections) > 1:
            counts["dropped: same text under different sections"] += len(owners)
            continue
        counts["dropped: duplicate text, same section"] += len(owners) - 1
        package, section, source = owners[0]  # packages are in sorted order: the first by name
        rows.append((package, text, section, source))
    for what, n in sorted(counts.items()):
        print(f"  {what}: {n}")

    frequency = Counter(section for _, _, section, _ in rows)
    keep = sorted(s for s, _ in frequency.most_common(args.classes))
    print(f"{len(rows)} distinct descriptions; the {args.classes} most frequent sections: "
          + ", ".join(f"{s} ({frequency[s]})" for s in keep))

    # Split by source package: fractions of the hash space in proportion to the per-class counts.
    per_class = {"train": args.train_per_class, "val": args.val_per_class, "test": args.test_per_class}
    total = sum(per_class.values())
    cut_val, cut_test = per_class["val"] / total, (per_class["val"] + per_class["test"]) / total
    pools: dict[str, dict[str, list]] = {s: defaultdict(list) for s in per_class}
    for package, text, section, source in rows:
        if section not in keep:
            continue
        u = stable_hash("source:" + source) / 2**64
        split = "val" if u < cut_val else "test" if u < cut_test else "train"
        pools[split][section].append((stable_hash(package), package, text, section))

    args.out.mkdir(parents=True, exist_ok=True)
    for split, n in per_class.items():
        chosen, cut = [], 0
        for section in keep:
            pool = sorted(pools[split][section])
            if len(pool) < n:
                print(f"  note: {split}/{section} has only {len(pool)} rows (wanted {n})")
            for key, package, text, section in pool[:n]:
                words = text.split(" ")
                if args.max_words and len(words) > args.max_words:
                    text, cut = " ".join(words[: args.max_words]), cut + 1
                chosen.append((key, package, text, section))
        chosen.sort(key=lambda r: r[1])  # by package name: stable, readable diffs
        file = args.out / f"{split}.csv"
        with open(file, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["package", "text", "label"])
            w.writerows((package, text, section) for _, package, text, section in chosen)
        print(f"{file}: {len(chosen)} rows ({cut} cut to {args.max_words} words), {file.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
