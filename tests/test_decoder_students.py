"""Students made of a decoder LLM's own layers (``student: from_teacher`` for causal LMs): the kept
layers compute what they computed inside the teacher, each keeps its attention kind (full or
sliding-window), and generation with the KV cache matches generation without it."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from distiltune.models.hf import build_student


def decoder(kind: str, layers: int = 6):
    torch.manual_seed(0)
    common = dict(vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=64)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    if kind == "qwen2":  # the upper half of the layers use a sliding window
        return Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=True, sliding_window=4, max_window_layers=3))
    return Gemma3ForCausalLM(Gemma3TextConfig(**common, head_dim=16, sliding_window=4))  # 5 sliding : 1 full


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma3"])
def test_kept_layers_compute_what_they_computed_inside_the_teacher(kind):
    teacher = decoder(kind).eval()
    keep = [0, 2, 5]
    student = build_student(teacher, keep).eval()
    assert student.config.num_hidden_layers == 3 and student.config.distiltune_teacher_layers == keep
    if getattr(teacher.config, "layer_types", None):
        assert student.config.layer_types == [teacher.config.layer_types[i] for i in keep]
    # the reference: the teacher itself with its other layers taken out (same weights, same kinds)
    cut = copy.deepcopy(teacher)
    cut.model.layers = torch.nn.ModuleList(cut.model.layers[i] for i in keep)
    cut.config.num_hidden_layers = 3
    if getattr(cut.config, "layer_types", None):
        cut.config.layer_types = student.config.layer_types
    for new, layer in enumerate(cut.model.layers):
        layer.self_attn.layer_idx = new
    ids = torch.randint(0, 60, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(student(input_ids=ids).logits, cut(input_ids=ids).logits)
        assert not torch.allclose(student(input_ids=ids).logits, teacher(input_ids=ids).logits)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma3"])
def test_a_decoder_student_generates_the_same_with_and_without_its_kv_cache(kind):
    student = build_student(decoder(kind), [1, 3, 4]).eval()
    prompt = torch.randint(0, 60, (1, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cached = student.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=True, pad_token_id=0)
        plain = student.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=False, pad_token_id=0)
    assert cached.shape == (1, 15) and torch.equal(cached, plain)
