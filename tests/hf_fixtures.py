"""Tiny Hugging Face models and tokenizers built from configs (no download), for the tests."""

from __future__ import annotations

from pathlib import Path

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "small", "red", "blue", "and", "over", "under", "fast", "slow"]


def word_tokenizer(words: list[str] | None = None):
    """A word-level fast tokenizer with [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for word in words or WORDS:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", model_max_length=64)


def tiny_bert(num_labels: int = 3, act: str = "relu"):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=len(WORDS) + 4, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, hidden_act=act,
                        num_labels=num_labels, max_position_embeddings=64)
    return BertForSequenceClassification(config).eval()


def save_bert_dir(path: Path, *, tokenizer: bool = True, **save_kwargs) -> object:
    """Save a tiny BERT classifier (and its tokenizer) with save_pretrained; returns the model."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    model = tiny_bert()
    model.save_pretrained(path, **save_kwargs)
    if tokenizer:
        word_tokenizer().save_pretrained(path)
    return model


TEXTS = ["the cat sat on the mat", "a dog ran", "the big red dog ran over the small cat",
         "slow", "the blue cat and the red dog sat under a mat"]
