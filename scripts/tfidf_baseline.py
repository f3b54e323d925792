"""TF-IDF + multinomial logistic regression baseline for a text-classification CSV split.

The reference figure a fine-tuned text model should beat on the same files. numpy/scipy only:

- features: lowercased word unigrams and bigrams (tokens of 2+ word characters) seen in at
  least ``--min-df`` training rows; sublinear tf (1 + log tf) times smoothed idf
  (log((1 + N) / (1 + df)) + 1), each row L2-normalised;
- model: softmax regression with an L2 penalty ``1 / (2 C) ||W||^2`` on the weights (not the
  bias), fitted by L-BFGS (``scipy.optimize.minimize``) on the mean cross-entropy;
- ``C`` is chosen on val from ``--c``; the test figures are for that ``C``.

    python scripts/tfidf_baseline.py                       # demo_data/debian_sections
    python scripts/tfidf_baseline.py --data DIR --text-column text --label-column label
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import optimize, sparse

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r"(?u)\b\w\w+\b")


def read_csv(file: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    with open(file, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r[text_column] for r in rows], [r[label_column] for r in rows]


def terms(text: str) -> list[str]:
    words = TOKEN.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


class TfIdf:
    def fit(self, texts: list[str], min_df: int) -> TfIdf:
        df = Counter(t for text in texts for t in set(terms(text)))
        self.vocab = {t: i for i, t in enumerate(sorted(t for t, n in df.items() if n >= min_df))}
        counts = np.array([df[t] for t in self.vocab], dtype=np.float64)
        self.idf = np.log((1 + len(texts)) / (1 + counts)) + 1
        return self

    def transform(self, texts: list[str]) -> sparse.csr_matrix:
        indptr, indices, data = [0], [], []
        for text in texts:
            tf = Counter(self.vocab[t] for t in terms(text) if t in self.vocab)
            cols = sorted(tf)
            indices += cols
            data += [1 + np.log(tf[c]) for c in cols]
            indptr.append(len(indices))
        x = sparse.csr_matrix((data, indices, indptr), shape=(len(texts), len(self.vocab)))
        x = x.multiply(self.idf).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(1))).ravel()
        return sparse.diags(1 / np.maximum(norms, 1e-12)) @ x


def fit_softmax(x: sparse.csr_matrix, y: np.ndarray, k: int, c: float, iters: int) -> np.ndarray:
    """(D + 1, K) weights (last row: bias) minimising mean cross-entropy + ||W||^2 / (2 C N)."""
    n, d = x.shape
    onehot = np.eye(k)[y]

    def loss(flat: np.ndarray):
        w = flat.reshape(d + 1, k)
        z = x @ w[:-1] + w[-1]  # (N, K)
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        p = np.exp(logp)
        value = -(onehot * logp).sum() / n + (w[:-1] ** 2).sum() / (2 * c * n)
        g = np.vstack([x.T @ (p - onehot) / n + w[:-1] / (c * n), (p - onehot).sum(0) / n])
        return value, g.ravel()

    res = optimize.minimize(loss, np.zeros((d + 1) * k), jac=True, method="L-BFGS-B", options={"maxiter": iters})
    return res.x.reshape(d + 1, k)


def predict(x: sparse.csr_matrix, w: np.ndarray) -> np.ndarray:
    return np.asarray(x @ w[:-1] + w[-1]).argmax(1)


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    f1 = []
    for c in range(k):
        tp = np.sum((pred == c) & (y == c))
        fp, fn = np.sum((pred == c) & (y != c)), np.sum((pred != c) & (y == c))
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO_ROOT / "demo_data" / "debian_sections",
                   help="folder with train.csv, val.csv, test.csv")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--min-df", type=int, default=2)
    p.add_argument("--c", type=float, nargs="+", default=[3.0, 10.0, 30.0], help="inverse L2 strengths to try")
    p.add_argument("--iters", type=int, default=300, help="L-BFGS iterations")
    args = p.parse_args(argv)

    data = {s: read_csv(args.data / f"{s}.csv", args.text_column, args.label_column) for s in ("train", "val", "test")}
    names = sorted(set(data["train"][1]))
    index = {n: i for i, n in enumerate(names)}
    unseen = {s: sorted(set(data[s][1]) - set(index)) for s in ("val", "test")}
    if any(unseen.values()):
        print(f"labels absent from train: {unseen}", file=sys.stderr)
        return 1
    tfidf = TfIdf().fit(data["train"][0], args.min_df)
    x = {s: tfidf.transform(texts) for s, (texts, _) in data.items()}
    y = {s: np.array([index[label] for label in labels]) for s, (_, labels) in data.items()}
    print(f"{len(names)} classes; rows: " + ", ".join(f"{s} {len(y[s])}" for s in y) + f"; {len(tfidf.vocab)} terms")

    best = None
    for c in args.c:
        w = fit_softmax(x["train"], y["train"], len(names), c, args.iters)
        acc = float(np.mean(predict(x["val"], w) == y["val"]))
        print(f"  C={c:g}: val accuracy {acc:.4f}")
        if best is None or acc > best[0]:
            best = (acc, c, w)
    _, c, w = best
    for split in ("val", "test"):
        pred = predict(x[split], w)
        print(f"{split}: accuracy {np.mean(pred == y[split]):.4f}  macro F1 {macro_f1(y[split], pred, len(names)):.4f}  (C={c:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
