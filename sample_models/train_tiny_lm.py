"""Train the tiny language model shipped in ``sample_models/tiny_lm/`` (a few seconds on CPU).

A Hugging Face ``save_pretrained`` directory as users have them: ``config.json``,
``model.safetensors`` and a tokenizer, for an ``OPTForCausalLM`` (ReLU feed-forward
layers, like the OPT models in which Voita et al. 2023 found many dead neurons),
two layers of width 48 with feed-forward width 192. It learns sentences of a
small generated language (this script writes them; nothing is downloaded), with a
learning rate high enough that a share of its feed-forward units die.

Writes, from the repository root:

* ``sample_models/tiny_lm/``: the model (``save_pretrained``) and its tokenizer (a
  word-level ``tokenizers`` tokenizer trained on the generated text, wrapped as a
  ``PreTrainedTokenizerFast``);
* ``sample_models/data/tiny_lm_text.txt``: 400 held-out sentences, one per line;
* ``sample_models/tiny_lm_metrics.json``: per-layer dead units on that text,
  counted here by brute force over real tokens only (padding excluded).

Run: ``python sample_models/train_tiny_lm.py``. Seeded, one CPU thread.
Needs ``transformers`` and ``tokenizers`` (``pip install -e '.[transformers]'``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "tiny_lm"
TEXT = HERE / "data" / "tiny_lm_text.txt"
METRICS = HERE / "tiny_lm_metrics.json"
SEED = 0
TRAIN_SENTENCES = 6000
HELD_OUT = 400
STEPS = 400
BATCH = 32
LR = 1e-2

_DETERMINERS = ["the", "a", "every", "one"]
_ADJECTIVES = ["big", "small", "red", "blue", "old", "young", "quiet", "loud", "fast", "slow"]
_NOUNS = ["cat", "dog", "bird", "fish", "man", "woman", "child", "horse", "fox", "mouse"]
_VERBS = ["sees", "likes", "chases", "follows", "finds", "hears", "watches", "helps"]
_INTRANSITIVE = ["sleeps", "runs", "sings", "waits", "jumps", "swims"]
_PLACES = ["in the garden", "on the hill", "by the river", "under the tree", "at home", "in the rain"]
_ADVERBS = ["today", "again", "slowly", "quickly", "often", "never"]


def _noun_phrase(rng: random.Random) -> str:
    words = [rng.choice(_DETERMINERS)]
    if rng.random() < 0.5:
        words.append(rng.choice(_ADJECTIVES))
    words.append(rng.choice(_NOUNS))
    return " ".join(words)


def sentence(rng: random.Random) -> str:
    """One sentence of the toy language: subject, verb, maybe object, place, adverb."""
    parts = [_noun_phrase(rng)]
    if rng.random() < 0.6:
        parts += [rng.choice(_VERBS), _noun_phrase(rng)]
    else:
        parts.append(rng.choice(_INTRANSITIVE))
    if rng.random() < 0.4:
        parts.append(rng.choice(_PLACES))
    if rng.random() < 0.3:
        parts.append(rng.choice(_ADVERBS))
    if rng.random() < 0.2:
        parts += ["and", _noun_phrase(rng), rng.choice(_INTRANSITIVE)]
    return " ".join(parts) + " ."


def build_tokenizer(texts: list[str]):
    """A word-level tokenizer trained on ``texts``, wrapped for transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(
        special_tokens=["[PAD]", "[UNK]", "</s>"], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="</s>", eos_token="</s>", model_max_length=32)


def build_model(vocab_size: int, pad: int, eos: int):
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(vocab_size=vocab_size, hidden_size=48, num_hidden_layers=2, ffn_dim=192,
                       num_attention_heads=4, max_position_embeddings=32, word_embed_proj_dim=48,
                       activation_function="relu", pad_token_id=pad, bos_token_id=eos,
                       eos_token_id=eos, dropout=0.0, attention_dropout=0.0)
    return OPTForCausalLM(config)


def dead_units(model, tokenizer, texts: list[str]) -> dict[str, list[int]]:
    """Brute force, independent of deadrelu: per feed-forward ReLU, units that output 0 on
    every real (unpadded) token of ``texts``. Returns {module path: [dead, units]}."""
    fired: dict[str, torch.Tensor] = {}
    masks: list[torch.Tensor] = []

    def hook(name: str):
        def record(module, inputs, output):
            real = masks[-1].bool()
            # OPT flattens the tokens to (N*T, F) rows before its feed-forward layers
            output = output.reshape(*real.shape, output.shape[-1])
            positive = (output > 0) & real.unsqueeze(-1)
            seen = positive.flatten(0, 1).any(0)
            fired[name] = fired.get(name, torch.zeros_like(seen)) | seen
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, torch.nn.ReLU)]
    model.eval()
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            batch = tokenizer(texts[i:i + 64], padding=True, return_tensors="pt")
            masks.append(batch["attention_mask"])
            model(**batch)
    for h in handles:
        h.remove()
    return {name: [int((~seen).sum()), int(seen.numel())] for name, seen in fired.items()}


def main() -> None:
    from transformers import set_seed
    from transformers.utils import logging

    logging.disable_progress_bar()
    torch.set_num_threads(1)
    set_seed(SEED)
    rng = random.Random(SEED)
    train = [sentence(rng) for _ in range(TRAIN_SENTENCES)]
    held_out = [sentence(rng) for _ in range(HELD_OUT)]
    tokenizer = build_tokenizer(train)
    model = build_model(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    model.train()
    order = torch.Generator().manual_seed(SEED)
    for step in range(STEPS):
        picks = torch.randint(0, len(train), (BATCH,), generator=order).tolist()
        batch = tokenizer([train[i] for i in picks], padding=True, return_tensors="pt")
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == STEPS - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}")
    model.eval()
    OUT.mkdir(exist_ok=True)
    model.save_pretrained(OUT)
    tokenizer.save_pretrained(OUT)
    TEXT.parent.mkdir(exist_ok=True)
    TEXT.write_text("\n".join(held_out) + "\n", encoding="utf-8")
    dead = dead_units(model, tokenizer, held_out)
    with torch.no_grad():
        batch = tokenizer(held_out, padding=True, return_tensors="pt")
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        held_loss = float(model(**batch, labels=labels).loss)
    metrics = {
        "seed": SEED, "torch_version": torch.__version__, "held_out_sentences": HELD_OUT,
        "held_out_tokens": int(batch["attention_mask"].sum()), "held_out_loss": round(held_loss, 4),
        "train": {"optimizer": "AdamW", "lr": LR, "steps": STEPS, "batch_size": BATCH},
        "dead_definition": "ReLU output == 0 at every real (unpadded) token of the held-out text",
        "dead_held_out": dead,
    }
    METRICS.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: metrics[k] for k in ("held_out_tokens", "held_out_loss", "dead_held_out")},
                     indent=2))


if __name__ == "__main__":
    main()
