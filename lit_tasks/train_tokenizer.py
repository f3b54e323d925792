"""`python -m lit_tasks tokenizer [--type wordpiece|bpe|bart-bpe|unigram] --files FILE ... --vocab_size N --out DIR`: train a tokenizer.

``--type wordpiece`` (the default), for pretraining from scratch (configs/masked_lm/): BERT's
pipeline (Unicode cleaning, lowercasing with accent stripping unless --cased,
whitespace/punctuation splitting, WordPiece with ``##`` continuation pieces,
``[CLS] A [SEP] B [SEP]``), saved as tokenizer.json + vocab.txt + tokenizer_config.json. The
special tokens take ids 0-4: [PAD] [UNK] [CLS] [SEP] [MASK]. Corpus files are read as the
masked-LM data reads them: plain text (one sentence per line), or CSV/JSONL with the text in
--text_column.

``--type bpe``, for causal LMs (GPT-2): GPT-2's byte-level BPE (lit_tasks.text.bpe), saved as
tokenizer.json + vocab.json + merges.txt + tokenizer_config.json. It keeps text as it is
(never lowercases: --cased does not apply) and can encode any text; <|endoftext|> is id 0 and
serves as bos, eos and pad; --add_prefix_space puts a space before each text, as before every
word but the first. Corpus files are read as the causal-LM data reads them: documents
separated by blank lines (their newlines and indentation kept), or one per CSV/JSONL row.

``--type bart-bpe``, for BART-style seq2seq models: the same byte-level BPE with BART's special
tokens ``<s> <pad> </s> <unk> <mask>`` (ids 0-4) and texts written ``<s> A </s>``; read as
``--type bpe``'s corpus; saved as the same four files (tokenizer_class BartTokenizer).

``--type unigram``, for T5-style seq2seq models: a SentencePiece Unigram (lit_tasks.text.sentencepiece):
``<pad> </s> <unk>`` are ids 0-2, ``</s>`` ends every text, and --extra_ids sentinels
(``<extra_id_0>`` ..., default 100) take the top ids in reverse order; saved as tokenizer.json +
tokenizer_config.json (tokenizer_class T5Tokenizer). Corpus files are read as for wordpiece
(one text per line, or CSV/JSONL rows).

Every folder is the layout of an HF checkpoint folder: ``data.tokenizer: DIR`` reads it back
(lit_tasks.text.load_tokenizer), and so does transformers.
"""

from __future__ import annotations

import argparse

from lit_tasks.data.causal_lm import read_corpus
from lit_tasks.data.masked_lm import read_documents
from lit_tasks.text.bpe import train_bpe_texts
from lit_tasks.text.byte_level import BART_SPECIALS, ENDOFTEXT
from lit_tasks.text.sentencepiece import train_unigram_texts
from lit_tasks.text.tokenizer import train_wordpiece_texts

MAX_LENGTH = {"wordpiece": 512, "bpe": 1024, "bart-bpe": 1024, "unigram": 512}  # BERT's, GPT-2's, BART's, T5's


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m lit_tasks tokenizer", description=__doc__.splitlines()[0])
    parser.add_argument("--type", choices=tuple(MAX_LENGTH), default="wordpiece",
                        help="wordpiece: BERT's (default); bpe: GPT-2's byte-level BPE; bart-bpe: BART's; "
                             "unigram: T5's SentencePiece Unigram")
    parser.add_argument("--files", nargs="+", required=True,
                        help="corpus files (.txt, or .csv/.jsonl with --text_column)")
    parser.add_argument("--vocab_size", type=int, required=True, help="vocabulary size, special tokens included")
    parser.add_argument("--out", required=True, help="folder to write (created; its tokenizer files are replaced)")
    parser.add_argument("--cased", action="store_true",
                        help="wordpiece: keep case and accents (default: lowercase, strip accents)")
    parser.add_argument("--add_prefix_space", action="store_true",
                        help="bpe, bart-bpe: put a space before each text (default: as GPT-2, none)")
    parser.add_argument("--extra_ids", type=int, default=None,
                        help="unigram: the number of sentinels <extra_id_N> (default 100, as T5)")
    parser.add_argument("--min_frequency", type=int, default=2, help="pairs of pieces seen fewer times are not merged")
    parser.add_argument("--model_max_length", type=int, default=None,
                        help="written to tokenizer_config.json (default: 512 for wordpiece, 1024 for bpe)")
    parser.add_argument("--text_column", default="text", help="the text column of CSV/JSONL files")
    args = parser.parse_args(argv)
    if args.type != "wordpiece" and args.cased:
        parser.error("--cased applies to --type wordpiece only: byte-level BPE never lowercases, nor does unigram")
    if args.type in ("wordpiece", "unigram") and args.add_prefix_space:
        parser.error("--add_prefix_space applies to --type bpe and bart-bpe only")
    if args.type != "unigram" and args.extra_ids is not None:
        parser.error("--extra_ids applies to --type unigram only")
    max_length = args.model_max_length or MAX_LENGTH[args.type]
    if args.type in ("bpe", "bart-bpe"):
        documents = [doc.text for file in args.files for doc in read_corpus(file, args.text_column)]
        bart = args.type == "bart-bpe"
        tokenizer = train_bpe_texts(documents, args.vocab_size, args.out, add_prefix_space=args.add_prefix_space,
                                    min_frequency=args.min_frequency, model_max_length=max_length,
                                    specials=BART_SPECIALS if bart else (ENDOFTEXT,))
        print(f"trained a {'BART ' if bart else ''}byte-level BPE tokenizer of {tokenizer.vocab_size} tokens on "
              f"{len(documents)} documents; wrote {args.out}/ (tokenizer.json, vocab.json, merges.txt, "
              "tokenizer_config.json)")
        return
    documents = [doc for file in args.files for doc in read_documents(file, args.text_column)]
    texts = (sentence for doc in documents for sentence in doc)
    sentences = sum(len(doc) for doc in documents)
    if args.type == "unigram":
        extra_ids = 100 if args.extra_ids is None else args.extra_ids
        tokenizer = train_unigram_texts(texts, args.vocab_size, args.out, extra_ids, max_length)
        print(f"trained a T5 Unigram tokenizer of {tokenizer.vocab_size} tokens ({extra_ids} sentinels) on "
              f"{sentences} sentences ({len(documents)} documents); wrote {args.out}/ (tokenizer.json, "
              "tokenizer_config.json)")
        return
    tokenizer = train_wordpiece_texts(texts, args.vocab_size, args.out, lowercase=not args.cased,
                                      min_frequency=args.min_frequency, model_max_length=max_length)
    print(f"trained a WordPiece tokenizer of {tokenizer.vocab_size} tokens on {sentences} sentences "
          f"({len(documents)} documents); wrote {args.out}/ (tokenizer.json, vocab.txt, tokenizer_config.json)")
