"""Non-learned baselines for translation JSONL splits, scored with sacreBLEU's corpus BLEU and chrF
(``lit_tasks.metrics.translation.bleu_chrf``, percent).

The reference figures a trained translation model should beat on the same files:

- **copy**: the prediction is the source itself. On Debian descriptions it scores above zero,
  since names, acronyms and numbers (ALSA, MIDI, GNOME, Python) stay the same in German;
- **word by word**: each source token replaced by its dictionary entry, in the source's order;
  a token without an entry is copied. The dictionary is built from the *training* pairs alone
  by co-occurrence: for an English token e (lower-cased) and a German token g (as written), with
  n(e), n(g) the number of training pairs holding them and c(e, g) the number holding both, the
  Dice coefficient is 2 c(e, g) / (n(e) + n(g)); e's entry is the g of highest Dice (ties: higher
  c, then the later g in code-point order) with c >= ``--min-count`` (2) and Dice >=
  ``--min-dice``, the value of ``--min-dice`` chosen on val by chrF; the test figures are for it.

Tokens are runs of word characters joined by ``-+./'`` (``C++``, ``3D-Grafiken``, ``RISC/OS``
stay one token) or single other characters; the output is the tokens joined by spaces, with no
space before ``.,;:!?)`` or after ``(``.

    python scripts/translation_baselines.py                     # demo_data/debian_translations
    python scripts/translation_baselines.py --data DIR --source-column en --target-column de
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from lit_tasks.metrics.translation import bleu_chrf  # noqa: E402
from summarization_baselines import read_pairs, report  # noqa: E402

TOKEN = re.compile(r"\w+(?:[-+./']\w+)*\+*|[^\w\s]")
NO_SPACE_BEFORE = re.compile(r" ([.,;:!?)])")
NO_SPACE_AFTER = re.compile(r"\( ")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def detokenize(words: list[str]) -> str:
    return NO_SPACE_AFTER.sub("(", NO_SPACE_BEFORE.sub(r"\1", " ".join(words)))


class DiceDictionary:
    """English token -> German token by the Dice coefficient of their co-occurrence in training
    pairs (module docstring)."""

    def __init__(self, sources: list[str], targets: list[str], min_count: int = 2):
        n_en, n_de, both = Counter(), Counter(), defaultdict(Counter)
        for source, target in zip(sources, targets):
            en, de = {t.lower() for t in tokens(source)}, set(tokens(target))
            n_en.update(en)
            n_de.update(de)
            for e in en:
                both[e].update(de)
        self.entries: dict[str, tuple[str, float]] = {}  # e -> (g, Dice)
        for e, counts in both.items():
            scored = [(2 * c / (n_en[e] + n_de[g]), c, g) for g, c in counts.items() if c >= min_count]
            if scored:
                dice, _, g = max(scored)
                self.entries[e] = (g, dice)

    def translate(self, source: str, min_dice: float) -> str:
        out = []
        for t in tokens(source):
            g, dice = self.entries.get(t.lower(), (t, 0.0))
            out.append(g if dice >= min_dice and dice > 0 else t)
        return detokenize(out)


def choose_min_dice(dictionary: DiceDictionary, sources: list[str], targets: list[str],
                    candidates: list[float]) -> tuple[float, dict[str, float]]:
    """The threshold of ``candidates`` with the best chrF on (sources, targets), and its scores;
    ties go to the first candidate."""
    best_t, best = None, None
    for t in candidates:
        scores = bleu_chrf([dictionary.translate(s, t) for s in sources], targets)
        if best is None or scores["chrf"] > best["chrf"]:
            best_t, best = t, scores
    return best_t, best


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "demo_data" / "debian_translations",
                        help="folder with train.jsonl, val.jsonl and test.jsonl")
    parser.add_argument("--source-column", default="source")
    parser.add_argument("--target-column", default="target")
    parser.add_argument("--min-count", type=int, default=2, help="fewest training pairs holding both tokens")
    parser.add_argument("--min-dice", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                        help="Dice thresholds tried on val")
    args = parser.parse_args(argv)
    splits = {s: read_pairs(args.data / f"{s}.jsonl", args.source_column, args.target_column)
              for s in ("train", "val", "test")}
    rows = [report("copy", split, bleu_chrf(list(splits[split][0]), splits[split][1])) for split in ("val", "test")]
    dictionary = DiceDictionary(*splits["train"], min_count=args.min_count)
    min_dice, val_scores = choose_min_dice(dictionary, *splits["val"], args.min_dice)
    extra = {"min_dice": min_dice, "entries": len(dictionary.entries)}
    rows.append(report("word by word", "val", val_scores, **extra))
    sources, targets = splits["test"]
    rows.append(report("word by word", "test", bleu_chrf([dictionary.translate(s, min_dice) for s in sources], targets),
                       **extra))
    return rows


if __name__ == "__main__":
    main()
