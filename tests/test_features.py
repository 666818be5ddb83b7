"""Feature capture by module path, layer maps, dynamic layer choice and dynamic KD, on tiny models."""
import pytest
import torch
from torch import nn

from distiltune.models import features as FT
from distiltune.models import layer_map
from distiltune.errors import DistilTuneError
from distiltune.losses import build_term, teacher_confidence


class TinyCNN(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                                      nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(width * 4, 3)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def test_capture_records_named_modules_and_removes_hooks():
    net = TinyCNN(4)
    x = torch.randn(2, 1, 8, 8)
    with FT.FeatureCapture(net, ["features.2", "head"]) as cap:
        logits = net(x)
    assert cap.outputs["features.2"].shape == (2, 4, 8, 8)
    assert torch.equal(cap.outputs["head"], logits)
    assert all(not m._forward_hooks for m in net.modules())  # nothing leaks into later steps


def test_capture_removes_hooks_even_when_forward_fails():
    net = TinyCNN(4)
    with pytest.raises(RuntimeError):
        with FT.FeatureCapture(net, ["features.0"]):
            net(torch.randn(2, 3, 8, 8))  # wrong channel count
    assert all(not m._forward_hooks for m in net.modules())


def test_unknown_module_path_lists_nearest_names():
    with pytest.raises(DistilTuneError, match=r"no submodule 'feature.2'.*features\.2"):
        FT.resolve_module(TinyCNN(4), "feature.2", "student")


def test_layer_map_presets():
    assert layer_map.uniform(6, 12) == [(i, [2 * i + 1]) for i in range(6)]
    assert layer_map.uniform(4, 12) == [(0, [2]), (1, [5]), (2, [8]), (3, [11])]  # TinyBERT's g(m) = 3m
    assert layer_map.last(6, 12) == [(5, [11])]
    assert layer_map.skip(6, 12) == [(i, [2 * i]) for i in range(6)]
    assert layer_map.skip(3, 12, init_layers=[0, 5, 11]) == [(0, [0]), (1, [5]), (2, [11])]
    assert layer_map.dynamic(6, 12) == [(i, [2 * i, 2 * i + 1]) for i in range(6)]
    assert layer_map.resolve("0:1,1:3|4", 2, 6) == [(0, [1]), (1, [3, 4])]
    assert layer_map.resolve([[0, 2]], 2, 6) == [(0, [2])]


@pytest.mark.parametrize("spec,match", [("0:12", "teacher layer 12 is out of range.*12 layers"),
                                        ("6:1", "student layer 6 is out of range"),
                                        ("zero:one", "not understood")])
def test_layer_map_errors(spec, match):
    with pytest.raises(DistilTuneError, match=match):
        layer_map.resolve(spec, 6, 12)


def test_cnn_hint_with_conv_adapter_and_pooled_maps():
    """FitNets on any nn.Module: 4-channel student map -> 1x1 conv -> 8-channel teacher map."""
    student, teacher = TinyCNN(4), TinyCNN(8)
    term = build_term("hint", student_modules=["features.2"], teacher_modules=["features.3"])
    term.setup(student, teacher)
    x = torch.randn(3, 1, 8, 8)
    with FT.FeatureCapture(student, ["features.2"]) as cs:
        student(x)
    with FT.FeatureCapture(teacher, ["features.3"]) as ct, torch.no_grad():
        teacher(x)
    s, t = FT.Outputs(logits=None, modules=cs.outputs), FT.Outputs(logits=None, modules=ct.outputs)
    term.build(s, t)
    assert isinstance(term.proj["0"], nn.Conv2d) and term.proj["0"].out_channels == 8
    loss = term(s, t, {})
    loss.backward()
    assert loss.item() > 0 and term.proj["0"].weight.grad is not None


def test_feature_terms_on_a_plain_module_need_paths():
    with pytest.raises(DistilTuneError, match="student_modules"):
        build_term("hidden_mse").setup(TinyCNN(4), TinyCNN(8))


def test_dynamic_layer_choice_learns_from_the_closest_teacher_layer():
    """Each student layer's loss is the minimum over its linked teacher layers."""
    term = build_term("hidden_mse", layers="0:0|1")
    term.pairs = [(1, [1, 2])]  # hidden_states indices: student layer 0 vs teacher layers 0 and 1
    h = torch.randn(2, 5, 4)
    far = h + 3.0
    s = FT.Outputs(logits=None, hidden_states=(h, h.clone()))
    t_near_second = FT.Outputs(logits=None, hidden_states=(h, far, h.clone()))
    t_near_first = FT.Outputs(logits=None, hidden_states=(h, h.clone(), far))
    assert term(s, t_near_second, {}).item() == pytest.approx(0.0)
    assert term(s, t_near_first, {}).item() == pytest.approx(0.0)
    fixed = build_term("hidden_mse", layers="0:1")
    fixed.pairs = [(1, [2])]
    assert fixed(s, t_near_first, {}).item() == pytest.approx(9.0)


def test_confidence_weighting_downweights_rows_the_teacher_gets_wrong():
    teacher = torch.tensor([[4.0, -4.0], [4.0, -4.0], [0.1, 0.0]])
    labels = torch.tensor([0, 1, -100])  # right and sure, wrong, unlabeled and unsure
    w = teacher_confidence(teacher, labels)
    assert w[0] > 0.99 and w[1] < 0.01 and 0.5 < w[2] < 0.53
    plain, dyn = build_term("kd"), build_term("kd", weighting="confidence")
    student = FT.Outputs(logits=torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.1, 0.0]]))
    batch = {"labels": labels, "temperature": 1.0}
    out = FT.Outputs(logits=teacher)
    # the wrong row's (large) KL barely counts, so the weighted loss is smaller
    assert dyn(student, out, batch).item() < plain(student, out, batch).item()


def test_sdpa_attention_gets_a_clear_error():
    from transformers import BertConfig, BertForSequenceClassification

    m = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=32))
    m.set_attn_implementation("sdpa")
    with pytest.raises(DistilTuneError, match="attn_implementation='eager'"):
        FT.forward(m, {"input_ids": torch.randint(5, 30, (2, 6))}, attentions=True, role="student")


def test_vector_paired_with_a_feature_map_is_refused():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    cnn = TinyCNN(8)
    term = build_term("hint", student_modules=["1"], teacher_modules=["features.3"])
    term.setup(mlp, cnn)
    x = torch.randn(4, 1, 8, 8)
    with FT.FeatureCapture(mlp, ["1"]) as cs:
        mlp(x)
    with FT.FeatureCapture(cnn, ["features.3"]) as ct:
        cnn(x)
    with pytest.raises(DistilTuneError, match=r"module '1' \(16,\) and teacher module 'features.3' \(8, 8, 8\) are different kinds"):
        term.build(FT.Outputs(logits=None, modules=cs.outputs), FT.Outputs(logits=None, modules=ct.outputs))


def test_attention_losses_without_mask_equal_an_all_ones_mask():
    from distiltune.losses.attention import attention_kl, attention_mse

    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 5, 5).softmax(-1), torch.randn(2, 3, 5, 5).softmax(-1)
    ones = torch.ones(2, 5)
    assert attention_kl(s, t, None).item() == pytest.approx(attention_kl(s, t, ones).item())
    assert attention_mse(s, t, None).item() == pytest.approx(attention_mse(s, t, ones).item())


def test_uniform_map_for_any_depths():
    assert layer_map.uniform(12, 6)[0] == (0, [0]) and layer_map.uniform(12, 6)[-1] == (11, [5])
    assert layer_map.uniform(4, 6) == [(0, [0]), (1, [2]), (2, [3]), (3, [5])]


def test_config_level_checks_of_loss_entries():
    from distiltune.config.schema import DistillConfig

    assert DistillConfig(losses="hidden_mse:0.5", report_to="none").objectives["main"][-1][0] == "hidden_mse"
    for bad, match in (({"losses": ["hidden_mse:nan"]}, "must be a number >= 0"),
                       ({"losses": [{"name": "hidden_mse", "layers": "a:b"}]}, "layer map 'a:b' is not understood"),
                       ({"losses": [{"name": "minilm", "relation_heads": "4"}]}, "relation_heads='4' must be an integer"),
                       ({"losses": [{"name": "hint", "student_modules": "block2", "teacher_modules": "block2"}]},
                        "must be lists of paths")):
        with pytest.raises(DistilTuneError, match=match):
            DistillConfig(report_to="none", **bad)


def test_distribution_terms_refuse_regression_outputs():
    out = FT.Outputs(logits=torch.randn(4, 1))
    with pytest.raises(DistilTuneError, match="one output \\(regression\\)"):
        build_term("js")(out, FT.Outputs(logits=torch.randn(4, 1)), {"temperature": 2.0})
