"""LoRA through peft for a stage's training (``teacher_lora``, ``student_lora``).

A stage trains low-rank adapters on the model's linear layers while its weights stay frozen; when
the stage ends the adapters are merged into the weights (``merge_and_unload``), so what the next
stage reads, what teaches and what is saved is a plain model of the same architecture. A new task
head (a classifier) is trained in full beside the adapters.
"""
from __future__ import annotations

import json

DEFAULTS = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}


def lora_options(value, name: str) -> dict | None:
    """``value`` as full LoRA settings (a mapping, JSON, or true for the defaults); None = off.
    Raises ValueError naming the bad key or value (the config turns it into a one-line error)."""
    if value in (None, False, "", "none", "no", "false"):
        return None
    if value in (True, "yes", "true"):
        return dict(DEFAULTS)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"{name}: '{value}' is not valid JSON; write e.g. {{\"r\": 16, \"alpha\": 32}}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping like {{r: 16, alpha: 32}} or true, not {value!r}")
    unknown = [k for k in value if k not in DEFAULTS]
    if unknown:
        raise ValueError(f"{name} has an unknown key '{unknown[0]}'; valid keys: {', '.join(DEFAULTS)}")
    opts = DEFAULTS | value
    if not isinstance(opts["r"], int) or isinstance(opts["r"], bool) or opts["r"] < 1:
        raise ValueError(f"{name} r={opts['r']!r} must be a whole number >= 1 (the adapters' rank, e.g. 16)")
    if not isinstance(opts["alpha"], (int, float)) or not opts["alpha"] > 0:
        raise ValueError(f"{name} alpha={opts['alpha']!r} must be > 0 (the adapters' scale is alpha / r)")
    if not isinstance(opts["dropout"], (int, float)) or not 0 <= opts["dropout"] < 1:
        raise ValueError(f"{name} dropout={opts['dropout']!r} must be in [0, 1)")
    if not (isinstance(opts["target_modules"], str) or
            (isinstance(opts["target_modules"], list) and all(isinstance(m, str) for m in opts["target_modules"]))):
        raise ValueError(f"{name} target_modules must be 'all-linear' or a list of module names (e.g. [q_proj, v_proj])")
    return opts


PEFT_TASKS = {"causal_lm": "CAUSAL_LM", "classification": "SEQ_CLS", "regression": "SEQ_CLS",
              "token_classification": "TOKEN_CLS", "question_answering": "QUESTION_ANS"}


def with_lora(model, opts: dict, task_type: str):
    """The model wrapped with trainable LoRA adapters (its own weights frozen; a task head trained)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=opts["r"], lora_alpha=opts["alpha"], lora_dropout=opts["dropout"],
                        target_modules=opts["target_modules"], task_type=PEFT_TASKS[task_type])
    return get_peft_model(model, config)


def merged(model):
    """A LoRA-wrapped model with its adapters merged into the weights (a plain model); others as they are."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def trainable_share(model) -> tuple[int, int]:
    """(trainable parameters, all parameters)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


__all__ = ["lora_options", "merged", "with_lora"]
