"""The private Trainer methods DistillationTrainer overrides, because no public hook does their job:
each must still exist with the parameters the override passes on, so a transformers release that
renames or reshapes one fails here, not silently in a run (the behaviour each carries is tested
where it matters: sealing and sampling in test_kill_resume, projections in test_trainer_terms,
spikes in test_numerics, the NaN filter in test_trainer_terms)."""
from __future__ import annotations

import inspect

import pytest
from transformers import Trainer

from distiltune.training.trainer import DistillationTrainer

OVERRIDDEN = {  # method -> the parameters (after self) our override relies on, in order
    "_save": ["output_dir", "state_dict"],
    "_save_checkpoint": ["model", "trial"],
    "_load_from_checkpoint": ["resume_from_checkpoint", "model"],
    "_get_train_sampler": ["train_dataset"],
    "_get_grad_norm": ["model", "grad_norm"],
}


@pytest.mark.parametrize("name", sorted(OVERRIDDEN))
def test_overridden_private_trainer_method_still_exists_with_its_parameters(name):
    assert hasattr(Trainer, name), f"transformers.Trainer no longer has {name}; DistillationTrainer's override is dead"
    params = list(inspect.signature(getattr(Trainer, name)).parameters)[1:]
    assert params[:len(OVERRIDDEN[name])] == OVERRIDDEN[name], params
    assert getattr(DistillationTrainer, name) is not getattr(Trainer, name)  # ours really overrides it


def test_no_other_private_trainer_method_is_overridden():
    """A new private override must be listed above (and justified in trainer.py)."""
    ours = {n for n, v in vars(DistillationTrainer).items()
            if n.startswith("_") and not n.startswith("__") and callable(v) and hasattr(Trainer, n)}
    assert ours == set(OVERRIDDEN), ours ^ set(OVERRIDDEN)
