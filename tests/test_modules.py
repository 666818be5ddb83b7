"""Any nn.Module as teacher/student: factory references, the Trainer wrapper, saving, and the digits example."""
from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from distiltune.models import features as FT
from distiltune.errors import DistilTuneError
from distiltune.models.factories import (META_FILE, ModuleClassifier, build_module, is_factory, is_module_dir, load_factory, load_module, save_module)
from distiltune.data.collate import ModuleCollator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NETS = textwrap.dedent('''
    from torch import nn

    def tiny(num_labels=3, hidden=6):
        return nn.Sequential(nn.Linear(4, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, num_labels))

    def not_a_module():
        return 3
''')


@pytest.fixture
def factory_dir(tmp_path, monkeypatch):
    """A folder holding ``dt_nets.py``; the test runs from elsewhere, so only ``base_dir`` finds it."""
    (tmp_path / "dt_nets.py").write_text(NETS)
    (tmp_path / "dt_broken.py").write_text("import dt_no_such_dependency\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    yield str(tmp_path)
    for name in ("dt_nets", "dt_broken"):
        sys.modules.pop(name, None)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("spec, expected", [
    ("examples.digits.models:cnn_teacher", True), ("examples/digits/models.py:cnn_teacher", True),
    ("C:/nets/models.py:build", True), ("demo:all-MiniLM-L6-v2", False), ("sentence-transformers/all-MiniLM-L6-v2", False),
    ("runs/demo/student", False), ("bert-base-uncased", False), ("https://example.com/x", False),
])
def test_is_factory(spec, expected):
    assert is_factory(spec) is expected


def test_factory_by_module_name_and_by_file(factory_dir):
    by_name = load_factory("dt_nets:tiny", base_dir=factory_dir)
    by_file = load_factory("dt_nets.py:tiny", base_dir=factory_dir)
    assert by_name().__class__.__name__ == by_file().__class__.__name__ == "Sequential"
    assert load_factory(os.path.join(factory_dir, "dt_nets.py") + ":tiny") is by_file  # one module object per file


def test_factory_errors_are_one_line(factory_dir):
    with pytest.raises(DistilTuneError) as err:
        load_factory("dt_no_such_module:tiny", base_dir=factory_dir)
    assert "module 'dt_no_such_module' not found" in one_line(err)
    with pytest.raises(DistilTuneError) as err:
        load_factory("missing/nets.py:tiny", base_dir=factory_dir)
    assert "'missing/nets.py' not found" in one_line(err)
    with pytest.raises(DistilTuneError) as err:
        load_factory("dt_broken:anything", base_dir=factory_dir)
    assert "imports 'dt_no_such_dependency'" in one_line(err)
    with pytest.raises(DistilTuneError) as err:
        load_factory("dt_nets.py:tinny", base_dir=factory_dir)
    assert "no function 'tinny'" in one_line(err) and "did you mean tiny" in str(err.value)
    with pytest.raises(DistilTuneError) as err:
        build_module("dt_nets.py:not_a_module", base_dir=factory_dir)
    assert "returned int, not a torch.nn.Module" in one_line(err)
    with pytest.raises(DistilTuneError):
        load_factory("demo:all-MiniLM-L6-v2")


def test_wrapper_forward_loss_and_hooks(factory_dir):
    model = build_module("dt_nets.py:tiny", base_dir=factory_dir, input_name="features", label_names=["a", "b"])
    assert model.num_labels == 2 and model.factory_kwargs == {"num_labels": 2}  # num_labels passed to the factory
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 1, -100, 0])
    out = model(features=x, labels=y, idx=torch.arange(5))  # unknown extras are ignored
    assert out.logits.shape == (5, 2)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, y, ignore_index=-100))
    captured = FT.forward(model, {"features": x}, modules=["1"], role="student")  # paths are relative to .net
    assert captured.modules["1"].shape == (5, 6)
    with pytest.raises(DistilTuneError) as err:
        model(feature=x)
    assert "reads the input 'features'" in one_line(err) and "['feature']" in str(err.value)


def test_wrapper_rejects_output_of_the_wrong_shape(factory_dir):
    model = build_module("dt_nets.py:tiny", kwargs={"num_labels": 3}, base_dir=factory_dir, label_names=["a", "b"])
    with pytest.raises(DistilTuneError) as err:
        model.eval()(pixel_values=torch.randn(2, 4))
    assert "returned (2, 3), not logits of shape (batch, 2)" in one_line(err)


def test_collator_types_and_unlabeled_rows():
    rows = [{"pixel_values": [[0.0, 1.0]], "labels": 3, "idx": 0}, {"pixel_values": [[0.5, 0.5]], "labels": -100, "idx": 1}]
    batch = ModuleCollator()(rows)
    assert set(batch) == {"pixel_values", "labels"}
    assert batch["pixel_values"].dtype == torch.float32 and batch["pixel_values"].shape == (2, 1, 2)
    assert batch["labels"].tolist() == [3, -100] and batch["labels"].dtype == torch.long


def test_save_load_round_trip(factory_dir, tmp_path):
    torch.manual_seed(0)
    model = build_module("dt_nets.py:tiny", kwargs={"hidden": 8}, base_dir=factory_dir, label_names=["a", "b", "c"])
    model.train()(pixel_values=torch.randn(16, 4) * 3 + 1)  # move the BatchNorm running statistics off their defaults
    path = str(tmp_path / "saved")
    save_module(model, path, card="# tiny", extra={"notes.txt": "hello"})
    save_module(model, path)  # overwriting an existing folder works
    assert sorted(os.listdir(path)) == [META_FILE, "model.safetensors"] and not os.path.exists(path + ".tmp")
    assert is_module_dir(path) and not is_module_dir(factory_dir)

    loaded = load_module(path, base_dir=factory_dir)
    x = torch.randn(7, 4)
    assert torch.equal(model.eval()(pixel_values=x).logits, loaded.eval()(pixel_values=x).logits)
    assert (loaded.label_names, loaded.factory_kwargs) == (["a", "b", "c"], {"hidden": 8, "num_labels": 3})

    meta_file = os.path.join(path, META_FILE)
    with open(meta_file) as f:
        meta = json.load(f)
    meta["kwargs"]["hidden"] = 5  # the factory now builds another shape than the weights hold
    with open(meta_file, "w") as f:
        json.dump(meta, f)
    with pytest.raises(DistilTuneError) as err:
        load_module(path, base_dir=factory_dir)
    assert "do not fit the network" in one_line(err)
    with pytest.raises(DistilTuneError) as err:
        save_module(ModuleClassifier(torch.nn.Linear(4, 2)), str(tmp_path / "x"))
    assert "not built from a factory" in one_line(err)


def test_digits_models_pair_for_hints():
    """Both CNNs' ``block2`` give 4x4 maps (the FitNets pair); the students stay under a quarter of the teacher."""
    models = f"{REPO}/examples/digits/models.py"
    teacher, student, mlp = (build_module(f"{models}:{n}", label_names=list("0123456789"))
                             for n in ("cnn_teacher", "cnn_student", "mlp_student"))
    n_teacher, n_student, n_mlp = (sum(p.numel() for p in m.parameters()) for m in (teacher, student, mlp))
    assert n_student <= 0.25 * n_teacher and n_mlp <= 0.25 * n_teacher
    x = {"pixel_values": torch.rand(3, 1, 8, 8)}
    t_out = FT.forward(teacher.eval(), x, modules=["block2"])
    s_out = FT.forward(student.eval(), x, modules=["block2"])
    assert t_out.modules["block2"].shape == (3, 64, 4, 4) and s_out.modules["block2"].shape == (3, 16, 4, 4)
    assert mlp.eval()(**x).logits.shape == (3, 10)


def test_digits_example_student_beats_its_no_teacher_twin(tmp_path, one_thread):
    """The example in --quick mode: the real digits CNNs through DistillationTrainer (ce + kd + hint)."""
    main = load_factory("examples/digits/distil_digits.py:main", base_dir=REPO)
    out = str(tmp_path / "digits")
    res = main(["--quick", "--output_dir", out])
    run = res["runs"][0]
    teacher = res["teacher"]
    assert res["student_params"] <= 0.25 * teacher["params"]
    assert teacher["accuracy"] > 0.95
    assert run["student"] >= 0.97 * teacher["accuracy"]
    assert run["student"] > run["baseline"]  # same initial weights, same epochs, no teacher

    # the saved student reloads through its factory and scores the same
    accuracy = load_factory("examples/digits/distil_digits.py:accuracy", base_dir=REPO)
    test = load_factory("examples/digits/models.py:load_digits_splits", base_dir=REPO)(seed=0)["test"]
    assert accuracy(load_module(os.path.join(out, "student"), base_dir=REPO), test) == run["student"]
