"""Text utilities shared by the text tasks: tokenizer loading and training."""

from lit_tasks.text.tokenizer import Tokenizer, load_tokenizer, train_wordpiece

__all__ = ["Tokenizer", "load_tokenizer", "train_wordpiece"]
