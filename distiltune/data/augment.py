"""Text augmentation for distillation: the student sees more (and harder) text, the teacher labels it.

Augmented copies are made once, as a seeded expansion of the distillation rows (``augment_factor``
copies per row), so they are ordinary rows: the teacher's logits for them are cached like any
other row's, and a rerun with the same seed makes the same copies. Copies carry no hard label (the
edit may change the meaning): only the distillation terms learn from them.

Methods, each applied word by word with probability ``augment_prob`` (at least one word changes):
- ``mask``: replace the word with the mask token (the student tokenizer's; its unknown token else);
- ``delete``: drop the word;
- ``swap``: swap the word with another random word of the text;
- ``mlm``: replace the word with one a masked language model predicts in context (TinyBERT's
  augmentation): the teacher's own MLM head by default, or ``augment_mlm_model``.
Each copy of a row uses one method, drawn at random from those listed.
"""
from __future__ import annotations

import hashlib
import random

from ..errors import DistilTuneError

METHODS = ("mask", "delete", "swap", "mlm")


def check_options(methods, factor, prob) -> list[str]:
    """Config errors (one line each), for DistillConfig's load-time checks."""
    errors = []
    bad = [m for m in methods or [] if m not in METHODS]
    if bad:
        errors.append(f"augment lists {bad}, not among {', '.join(METHODS)}; pick from those")
    if factor is not None and factor < 1:
        errors.append(f"augment_factor={factor} must be >= 1 (augmented copies per row); leave augment unset for none")
    if factor is not None and not methods:
        errors.append("augment_factor is set but augment lists no method; set augment: [mask, delete, swap] (or mlm)")
    if not 0 < prob <= 1:
        errors.append(f"augment_prob={prob} must be in (0, 1]: the chance each word is changed")
    return errors


def _rng(seed: int, copy: int, row: int, column: str) -> random.Random:
    h = hashlib.sha256(f"{seed}:{copy}:{row}:{column}".encode()).digest()
    return random.Random(int.from_bytes(h[:8], "little"))


def _positions(n: int, prob: float, rng: random.Random) -> list[int]:
    picked = [i for i in range(n) if rng.random() < prob]
    return picked or [rng.randrange(n)]


def edit(text: str, method: str, prob: float, rng: random.Random, mask_token: str) -> tuple[str, list[int]]:
    """One augmented text; for ``mlm`` the chosen positions come back masked, to be filled by the MLM."""
    words = text.split()
    if not words:
        return text, []
    pos = _positions(len(words), prob, rng)
    if method == "delete":
        if len(words) == 1:
            return text, []
        keep = set(range(len(words))) - set(pos)
        if not keep:  # never an empty text
            keep = {rng.randrange(len(words))}
        return " ".join(w for i, w in enumerate(words) if i in keep), []
    if method == "swap":
        for i in pos:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        return " ".join(words), []
    for i in pos:  # mask, and mlm's first half
        words[i] = mask_token
    return " ".join(words), pos if method == "mlm" else []


class MLMFiller:
    """Fills masked words with a masked LM's in-context predictions (whole words, not the original)."""

    def __init__(self, name: str, top_k: int = 5, batch_size: int = 32):
        import torch
        from transformers import AutoModelForMaskedLM

        from ..models import hf as M

        path = M.resolve_path(name)
        try:
            self.tok = M.load_tokenizer(path)
            self.model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
        except (OSError, ValueError) as e:
            raise DistilTuneError(f"augment 'mlm' needs a masked language model, but '{name}' has none "
                                  f"({str(e).splitlines()[0][:120]})",
                                  "set augment_mlm_model: <a masked LM, e.g. bert-base-uncased>, or drop mlm from augment") from None
        head = [k for k in info.get("missing_keys", []) if any(s in k for s in ("lm_head", "cls.predictions", "generator_lm"))]
        if head or self.tok.mask_token is None:
            raise DistilTuneError(f"augment 'mlm' needs a masked-LM head, but '{name}' has none (its {head[:2] or 'mask token'} "
                                  "would be untrained)",
                                  "set augment_mlm_model: <a masked LM, e.g. bert-base-uncased>, or drop mlm from augment")
        self.model.eval()
        self.top_k, self.batch_size, self.torch = top_k, batch_size, torch
        self.mask = self.tok.mask_token
        self.specials = set(self.tok.all_special_tokens)

    def fill(self, texts: list[str], rngs: list[random.Random]) -> list[str]:
        """``texts`` hold ``self.mask`` where a word was masked; each mask becomes a predicted word."""
        torch = self.torch
        out = list(texts)
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start:start + self.batch_size]
            enc = self.tok(chunk, truncation=True, max_length=128, padding=True, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**enc).logits
            top = logits.topk(self.top_k + 2, dim=-1).indices
            for b, text in enumerate(chunk):
                ids = enc["input_ids"][b].tolist()
                fills = []
                for p, tid in enumerate(ids):
                    if tid != self.tok.mask_token_id:
                        continue
                    words = [self.tok.decode([int(t)]).strip() for t in top[b, p]]
                    words = [w for w in words if w and w not in self.specials and not w.startswith("##")
                             and any(ch.isalnum() for ch in w)]  # whole words, not pieces, marks or punctuation
                    words = words or [self.tok.unk_token or "_"]
                    fills.append(rngs[start + b].choice(words[: self.top_k]))
                parts = text.split(self.mask)
                fills += [""] * (len(parts) - 1 - len(fills))  # masks cut off by truncation become nothing
                out[start + b] = "".join(p + f for p, f in zip(parts, fills + [""])).strip()
        return out


def expand(ds, text_columns: tuple[str, ...], methods: list[str], factor: int, prob: float, seed: int,
           mask_token: str, filler: MLMFiller | None = None, fill_label=None):
    """``factor`` seeded augmented copies of every row of ``ds`` (labels set to ``fill_label``);
    ``filler`` is needed when ``methods`` include mlm."""
    from datasets import Dataset

    if "mlm" in methods and filler is None:
        raise ValueError("augment 'mlm' needs an MLMFiller")
    columns = {c: [] for c in text_columns}
    for copy in range(factor):
        for col in text_columns:
            texts, pending, rngs = ds[col], [], []
            for row, text in enumerate(texts):
                rng = _rng(seed, copy, row, col)
                method = rng.choice(methods)
                new, masked = edit(text, method, prob, rng, filler.mask if method == "mlm" else mask_token)
                columns[col].append(new)
                if masked:
                    pending.append(len(columns[col]) - 1)
                    rngs.append(rng)
            if pending:
                filled = filler.fill([columns[col][i] for i in pending], rngs)
                for i, text in zip(pending, filled):
                    columns[col][i] = text
    out = Dataset.from_dict({**columns, "labels": [fill_label] * (len(ds) * factor)})
    return out.cast(ds.features) if "labels" in ds.features else out
