"""Text utilities shared by the text tasks: tokenizer loading and training."""

from lit_tasks.text.bpe import train_bpe, train_bpe_texts
from lit_tasks.text.tokenizer import Tokenizer, load_tokenizer, train_wordpiece

__all__ = ["Tokenizer", "load_tokenizer", "train_bpe", "train_bpe_texts", "train_wordpiece"]
