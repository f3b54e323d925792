"""`python -m lit_tasks tokenizer --files FILE ... --vocab_size N --out DIR`: train a WordPiece tokenizer.

For pretraining from scratch (configs/masked_lm/): BERT's pipeline (Unicode cleaning,
lowercasing with accent stripping unless --cased, whitespace/punctuation splitting, WordPiece
with ``##`` continuation pieces, ``[CLS] A [SEP] B [SEP]``) is trained on the corpus and saved
as tokenizer.json + vocab.txt + tokenizer_config.json, the layout of an HF checkpoint folder:
``data.tokenizer: DIR`` reads it back (lit_tasks.text.load_tokenizer), and so does transformers.

Corpus files are read as the masked-LM data reads them: plain text (one sentence per line),
or CSV/JSONL with the text in --text_column. The special tokens take ids 0-4:
[PAD] [UNK] [CLS] [SEP] [MASK].
"""

from __future__ import annotations

import argparse

from lit_tasks.data.masked_lm import read_documents
from lit_tasks.text.tokenizer import train_wordpiece_texts


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m lit_tasks tokenizer", description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", required=True, help="corpus files (.txt, or .csv/.jsonl with --text_column)")
    parser.add_argument("--vocab_size", type=int, required=True, help="vocabulary size, special tokens included")
    parser.add_argument("--out", required=True, help="folder to write (created; its tokenizer files are replaced)")
    parser.add_argument("--cased", action="store_true", help="keep case and accents (default: lowercase, strip accents)")
    parser.add_argument("--min_frequency", type=int, default=2, help="pairs of pieces seen fewer times are not merged")
    parser.add_argument("--model_max_length", type=int, default=512, help="written to tokenizer_config.json")
    parser.add_argument("--text_column", default="text", help="the text column of CSV/JSONL files")
    args = parser.parse_args(argv)
    documents = [doc for file in args.files for doc in read_documents(file, args.text_column)]
    texts = (sentence for doc in documents for sentence in doc)
    tokenizer = train_wordpiece_texts(texts, args.vocab_size, args.out, lowercase=not args.cased,
                                      min_frequency=args.min_frequency, model_max_length=args.model_max_length)
    sentences = sum(len(doc) for doc in documents)
    print(f"trained a WordPiece tokenizer of {tokenizer.vocab_size} tokens on {sentences} sentences "
          f"({len(documents)} documents); wrote {args.out}/ (tokenizer.json, vocab.txt, tokenizer_config.json)")
