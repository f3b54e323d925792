"""Text utilities shared by the text tasks: tokenizer loading and training."""

from lit_tasks.text.bpe import train_bpe, train_bpe_texts
from lit_tasks.text.byte_level import BART_SPECIALS
from lit_tasks.text.sentencepiece import train_unigram, train_unigram_texts
from lit_tasks.text.tokenizer import Tokenizer, load_tokenizer, train_wordpiece

__all__ = ["BART_SPECIALS", "Tokenizer", "load_tokenizer", "train_bpe", "train_bpe_texts", "train_unigram",
           "train_unigram_texts", "train_wordpiece"]
