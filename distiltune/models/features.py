"""Capturing what loss terms read: hidden states, attentions, and any submodule's output.

HF models give ``hidden_states``/``attentions`` when asked (cheaper than hooks, one flag);
for any ``nn.Module`` a term names submodule paths (``encoder.layer.3``, ``layer2.1.conv2``)
and :class:`FeatureCapture` records their outputs with forward hooks that are removed as
soon as the forward pass is done, so nothing leaks across steps.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import DistilTuneError


@dataclass
class Outputs:
    """One model's forward pass as loss terms see it. ``hidden_states[0]`` is the embedding
    output and ``hidden_states[i + 1]`` layer i's (HF convention); ``modules`` maps a path to
    the output of that submodule; ``attention_mask`` is the mask the model was given."""

    logits: torch.Tensor
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    modules: dict[str, torch.Tensor] = field(default_factory=dict)
    attention_mask: torch.Tensor | None = None


def root(model: nn.Module) -> nn.Module:
    """The module paths are relative to: the user's network inside a wrapper, else the model."""
    return getattr(model, "net", None) if getattr(model, "is_distiltune_wrapper", False) else model


def is_hf(model: nn.Module) -> bool:
    return hasattr(model, "config") and hasattr(model.config, "model_type")


def resolve_module(model: nn.Module, path: str, role: str = "model") -> nn.Module:
    base = root(model)
    names = [n for n, _ in base.named_modules() if n]
    try:
        return base.get_submodule(path)
    except AttributeError:
        near = difflib.get_close_matches(path, names, n=3, cutoff=0.4)
        listed = ", ".join(near) if near else ", ".join(names[:8])
        raise DistilTuneError(f"the {role} has no submodule '{path}'",
                              f"use one of its module paths, e.g. {listed}") from None


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    raise DistilTuneError(f"a hooked module returned {type(out).__name__}, not a tensor",
                          "hook a module whose output is a tensor (e.g. a layer, not a whole model)")


class FeatureCapture:
    """Context manager: ``with FeatureCapture(model, paths) as cap: model(x)``; then ``cap.outputs``."""

    def __init__(self, model: nn.Module, paths: list[str], role: str = "model"):
        self.modules = {p: resolve_module(model, p, role) for p in paths}
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []

    def __enter__(self) -> "FeatureCapture":
        for path, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(path)))
        return self

    def _hook(self, path):
        def store(module, args, out):
            self.outputs[path] = _first_tensor(out)
        return store

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def forward(model: nn.Module, inputs: dict, hidden_states: bool = False, attentions: bool = False,
            modules: list[str] | None = None, role: str = "model", hook_model: nn.Module | None = None) -> Outputs:
    """Run ``model(**inputs)`` and collect what was asked for. ``hook_model`` is the unwrapped
    model to hook when ``model`` is a DDP/compiled wrapper."""
    kwargs = dict(inputs)
    # `is not None`, not `or`: a torch.compile wrapper has no truth value (it forbids len())
    hook_model = getattr(hook_model if hook_model is not None else model, "_orig_mod", hook_model if hook_model is not None else model)
    if is_hf(hook_model):
        if hidden_states:
            kwargs["output_hidden_states"] = True
        if attentions:
            kwargs["output_attentions"] = True
    elif hidden_states or attentions:
        raise DistilTuneError(f"the {role} is not a transformers model, so it has no hidden_states/attentions",
                              "name its submodules instead: student_modules / teacher_modules in the loss entry")
    with FeatureCapture(hook_model, modules or [], role) as cap:
        out = model(**kwargs)
    if isinstance(out, torch.Tensor):
        logits = out
    elif getattr(out, "logits", None) is None and getattr(out, "start_logits", None) is not None:
        from .spans import stacked  # a span head (extractive QA): start and end as one (batch, 2, length) tensor

        logits = stacked(out)
    else:
        logits = out.logits
    atts = getattr(out, "attentions", None) if attentions else None
    if attentions and not atts:
        impl = getattr(getattr(model, "config", None), "_attn_implementation", "?")
        raise DistilTuneError(
            f"the {role} returned no attention maps (its attention implementation is '{impl}', which does not expose them)",
            "load it with attn_implementation='eager' (model.set_attn_implementation('eager')); distiltune run does this for attention terms")
    return Outputs(logits=logits, hidden_states=getattr(out, "hidden_states", None) if hidden_states else None,
                   attentions=atts, modules=dict(cap.outputs), attention_mask=inputs.get("attention_mask"))


# ---- transformer layout: where each encoder keeps its layers and attention projections ----
# (layer stack under base_model, config attribute counting layers, q/k/v paths inside a layer)
ENCODERS = {
    "bert": ("encoder.layer", "num_hidden_layers", ("attention.self.query", "attention.self.key", "attention.self.value")),
    "roberta": ("encoder.layer", "num_hidden_layers", ("attention.self.query", "attention.self.key", "attention.self.value")),
    "xlm-roberta": ("encoder.layer", "num_hidden_layers", ("attention.self.query", "attention.self.key", "attention.self.value")),
    "electra": ("encoder.layer", "num_hidden_layers", ("attention.self.query", "attention.self.key", "attention.self.value")),
    "mpnet": ("encoder.layer", "num_hidden_layers", ("attention.attn.q", "attention.attn.k", "attention.attn.v")),
    "distilbert": ("transformer.layer", "n_layers", ("attention.q_lin", "attention.k_lin", "attention.v_lin")),
}
# Decoder LLMs (causal LMs): the families of the offline models (SmolLM2 is Llama, Qwen2.5, Gemma 3)
# and their close relatives, all with the same layout.
_DECODER = ("layers", "num_hidden_layers", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"))
DECODERS = {t: _DECODER for t in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo2")}
LAYOUTS = {**ENCODERS, **DECODERS}


def encoder_layout(model: nn.Module, role: str, need: str = "layers"):
    mtype = getattr(getattr(model, "config", None), "model_type", None)
    if mtype not in LAYOUTS:
        what = f"a '{mtype}' model" if mtype else "a model that is not a transformers encoder or decoder"
        raise DistilTuneError(f"{need} of {what} ({role}) are not mapped by distiltune",
                              f"supported: {', '.join(sorted(LAYOUTS))}; or name submodules via student_modules/teacher_modules")
    return LAYOUTS[mtype]


def num_layers(model: nn.Module, role: str) -> int:
    return int(getattr(model.config, encoder_layout(model, role)[1]))


def hidden_size(model: nn.Module) -> int:
    c = model.config
    return int(getattr(c, "hidden_size", None) or getattr(c, "dim"))


def num_heads(model: nn.Module) -> int:
    c = model.config
    return int(getattr(c, "num_attention_heads", None) or getattr(c, "n_heads"))


def qkv_paths(model: nn.Module, layer: int, role: str) -> tuple[str, str, str]:
    stack, _, qkv = encoder_layout(model, role, "attention projections")
    prefix = f"{model.base_model_prefix}.{stack}.{layer}"
    return tuple(f"{prefix}.{p}" for p in qkv)
