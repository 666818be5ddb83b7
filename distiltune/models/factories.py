"""Any ``torch.nn.Module`` as a teacher or student: factories, a Trainer-friendly wrapper, saving.

A network is named by a factory reference, ``module:function`` (``examples.digits.models:cnn_teacher``)
or ``path/to/file.py:function``. Only the module the user names is imported, when it is named:
config files never execute code themselves, they can only point at code the user wrote.
:class:`ModuleClassifier` lets ``transformers.Trainer`` drive the network (keyword inputs in,
``SequenceClassifierOutput`` out); a saved model is the factory reference, its keyword arguments
and the weights as safetensors (never pickles), so loading rebuilds the network through the factory.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Callable

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ..errors import DistilTuneError

META_FILE = "distiltune_module.json"
WEIGHTS_FILE = "model.safetensors"
# ``module.path:function`` or ``some/file.py:function``; ``demo:...`` names a bundled model instead.
_FACTORY = re.compile(r"(?P<left>.+\.py|[A-Za-z_][\w.]*):(?P<name>[A-Za-z_]\w*)")


# ---------- factory references ----------

def is_factory(spec: str) -> bool:
    """True for ``module:function`` or ``file.py:function``; False for hub names (``org/name``),
    local folders and ``demo:`` models."""
    return isinstance(spec, str) and not spec.startswith("demo:") and _FACTORY.fullmatch(spec) is not None


def load_factory(spec: str, base_dir: str | None = None) -> Callable:
    """The function (or class) ``spec`` names, importing its module (and only that) on first use.

    A module name is looked up on ``sys.path`` plus the current folder and ``base_dir`` (the
    config file's folder); a ``.py`` path is relative to the current folder, then ``base_dir``.
    """
    if not is_factory(spec):
        raise DistilTuneError(f"'{spec}' is not a factory reference",
                              "write module:function (my_pkg.models:build) or path/to/file.py:function")
    left, name = spec.rsplit(":", 1)
    module = _import_file(left, base_dir) if left.endswith(".py") else _import_module(left, base_dir)
    fn = getattr(module, name, None)
    if callable(fn):
        return fn
    own = sorted(n for n, v in vars(module).items()
                 if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__)
    near = difflib.get_close_matches(name, own, n=3, cutoff=0.5)
    raise DistilTuneError(f"'{left}' has no function '{name}'",
                          f"did you mean {', '.join(near)}?" if near else f"its functions: {', '.join(own) or 'none'}")


@contextlib.contextmanager
def _on_sys_path(dirs: list[str]):
    """Put ``dirs`` first on ``sys.path`` for one import, then take out what we added (only that)."""
    added = [d for d in dict.fromkeys(dirs) if d and d not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for d in added:
            if d in sys.path:
                sys.path.remove(d)


# Installed packages whose functions may be named as factories without being your own code.
TRUSTED_MODULES = ("torchvision.models", "timm")


def _trusted(name: str) -> list[str]:
    extra = [m.strip() for m in os.environ.get("DISTILTUNE_TRUSTED_MODULES", "").split(",") if m.strip()]
    return [m for m in (*TRUSTED_MODULES, *extra) if name == m or name.startswith(m + ".")]


def _check_own_module(name: str, dirs: list[str]) -> None:
    """A factory named by module runs that module's code: only your own modules (found under the
    current folder or the config's folder) or allow-listed packages, never e.g. ``subprocess:run``
    smuggled in through a config or a saved network's metadata. Checked before anything is imported."""
    if _trusted(name):
        return
    top = name.split(".")[0]
    where = None
    if top not in sys.stdlib_module_names and top not in sys.builtin_module_names:
        with _on_sys_path(dirs):
            spec = importlib.util.find_spec(top)  # locates the top package without running it
        if spec is None:
            return  # not found: the import below says so
        where = spec.origin if spec.has_location else None
        if where is None and spec.submodule_search_locations:
            where = list(spec.submodule_search_locations)[0]
        inside = lambda ds: any(os.path.abspath(where).startswith(os.path.join(os.path.abspath(d), "")) for d in ds)
        # installed packages are not your own, even when the environment sits in the project folder
        if where and inside(dirs) and not inside({sys.prefix, sys.exec_prefix, sys.base_prefix}):
            return
    raise DistilTuneError(
        f"factory module '{name}' is not your own code ({'the standard library' if where is None else where}); "
        f"distiltune imports factories only from modules under {' or '.join(dirs)} or from allow-listed packages",
        f"move the factory into your project, name its file (path/to/file.py:function), or trust the package: "
        f"DISTILTUNE_TRUSTED_MODULES={top}")


def _import_module(name: str, base_dir: str | None):
    dirs = [os.getcwd()] + ([os.path.abspath(base_dir)] if base_dir else [])
    _check_own_module(name, dirs)
    try:
        with _on_sys_path(dirs):
            return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and not (name == e.name or name.startswith(e.name + ".")):
            raise DistilTuneError(f"importing '{name}' failed: it imports '{e.name}', which is not installed",
                                  f"install the package that provides '{e.name}'") from None
        raise DistilTuneError(f"module '{name}' not found (looked on sys.path and in {', '.join(dirs)})",
                              "give a module importable from there, or a file path: path/to/file.py:function") from None


def _import_file(path: str, base_dir: str | None):
    tried = [path] if os.path.isabs(path) else [os.path.abspath(path)] + (
        [os.path.abspath(os.path.join(base_dir, path))] if base_dir else [])
    found = next((p for p in tried if os.path.isfile(p)), None)
    if found is None:
        raise DistilTuneError(f"factory file '{path}' not found (looked for {', '.join(tried)})",
                              "give a path relative to the current folder or to the config file's folder")
    # One module object per file, so importing it twice gives the same classes.
    stem = re.sub(r"\W", "_", os.path.basename(found)[:-3])
    mod_name = f"distiltune_user_{stem}_{hashlib.sha1(found.encode()).hexdigest()[:8]}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, found)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        with _on_sys_path([os.path.dirname(found)]):  # the file may import its neighbours, as when run as a script
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[mod_name]
        raise
    return module


# ---------- the wrapper the Trainer drives ----------

class ModuleClassifier(nn.Module):
    """A user network ``net`` (a tensor in, logits ``(batch, num_labels)`` out) with the HF calling
    convention: ``model(pixel_values=x, labels=y)`` -> ``SequenceClassifierOutput``.

    ``input_name`` is the batch key (dataset column) fed to ``net``; other keys are ignored, as
    the trainer passes extras. ``labels`` is a named argument so the Trainer recognises the label
    column; when given, the output carries the hard-label loss. Module paths for feature terms are
    relative to ``net`` (see ``features.root``). ``factory``/``factory_kwargs`` rebuild ``net`` on load.
    """

    is_distiltune_wrapper = True

    def __init__(self, net: nn.Module, input_name: str = "pixel_values", num_labels: int | None = None,
                 label_names: list[str] | None = None, factory: str | None = None, factory_kwargs: dict | None = None):
        super().__init__()
        self.net = net
        self.input_name = input_name
        self.label_names = list(label_names) if label_names is not None else None
        self.num_labels = len(self.label_names) if self.label_names is not None else num_labels
        self.factory = factory
        self.factory_kwargs = dict(factory_kwargs or {})

    @property
    def main_input_name(self) -> str:  # what transformers calls the input (e.g. to count inputs seen)
        return self.input_name

    def forward(self, labels: torch.Tensor | None = None, **inputs) -> SequenceClassifierOutput:
        if self.input_name not in inputs:
            raise DistilTuneError(f"the model reads the input '{self.input_name}' but the batch holds {sorted(inputs)}",
                                  "set input_column to the column holding the network's input (or rename that column)")
        logits = self.net(inputs[self.input_name])
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or (
                self.num_labels is not None and logits.shape[-1] != self.num_labels):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise DistilTuneError(f"the network returned {got}, not logits of shape (batch, {self.num_labels or 'num_labels'})",
                                  "make its forward return one logits tensor with one column per label")
        loss = None
        if labels is not None:
            from .task_loss import hard_label_loss  # lazy: the loss package imports the feature machinery

            loss = hard_label_loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def build_module(factory: str, kwargs: dict | None = None, base_dir: str | None = None, input_name: str = "pixel_values",
                 label_names: list[str] | None = None) -> ModuleClassifier:
    """Call the factory and wrap its network. ``num_labels`` is passed when ``label_names`` is given
    and the factory takes that argument (and it is not in ``kwargs`` already)."""
    fn = load_factory(factory, base_dir)
    kwargs = dict(kwargs or {})
    if label_names is not None and "num_labels" not in kwargs and "num_labels" in _parameters(fn):
        kwargs["num_labels"] = len(label_names)
    net = fn(**kwargs)
    if not isinstance(net, nn.Module):
        raise DistilTuneError(f"factory '{factory}' returned {type(net).__name__}, not a torch.nn.Module",
                              "make it return the network (an nn.Module instance)")
    return ModuleClassifier(net, input_name, num_labels=kwargs.get("num_labels"), label_names=label_names,
                            factory=factory, factory_kwargs=kwargs)


def _parameters(fn: Callable) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # some builtins have no signature
        return set()


# ---------- batches ----------


# ---------- saving and loading ----------

def save_module(model: ModuleClassifier, path: str, card: str | None = None, extra: dict[str, str] | None = None) -> None:
    """Write ``path`` atomically (temp folder + rename): weights of ``model.net`` as ``model.safetensors``,
    how to rebuild it in ``distiltune_module.json``, ``card`` as README.md, ``extra`` as name -> text files."""
    from safetensors.torch import save_model

    if not model.factory:
        raise DistilTuneError("this network was not built from a factory, so a saved copy could not be rebuilt",
                              "build it with distiltune.models.factories.build_module('file.py:function')")
    meta = {"factory": model.factory, "kwargs": model.factory_kwargs, "input_name": model.input_name,
            "num_labels": model.num_labels, "label_names": model.label_names}
    try:
        meta_text = json.dumps(meta, indent=2)
    except TypeError as e:
        raise DistilTuneError(f"the factory arguments {model.factory_kwargs} cannot be saved as JSON ({e})",
                              "pass numbers, strings, lists or dicts to the factory") from None
    from .hf import write_folder

    write_folder(path, lambda tmp: save_model(model.net, os.path.join(tmp, WEIGHTS_FILE), metadata={"format": "pt"}),
                 {META_FILE: meta_text} | ({"README.md": card} if card else {}) | (extra or {}))


def is_module_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, META_FILE))


def load_module(path: str, base_dir: str | None = None) -> ModuleClassifier:
    """Rebuild a saved network through its factory and load its weights (safetensors only)."""
    from safetensors.torch import load_model

    if not is_module_dir(path):
        raise DistilTuneError(f"'{path}' is not a saved distiltune network (no {META_FILE})",
                              "give a folder written by save_module / distiltune run")
    with open(os.path.join(path, META_FILE)) as f:
        meta = json.load(f)
    model = build_module(meta["factory"], meta.get("kwargs"), base_dir, meta.get("input_name", "pixel_values"),
                         meta.get("label_names"))
    model.num_labels = meta.get("num_labels", model.num_labels)
    try:
        missing, unexpected = load_model(model.net, os.path.join(path, WEIGHTS_FILE), strict=False)
        problem = (f"missing: {', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(unexpected[:3]) or 'none'}"
                   if missing or unexpected else None)
    except RuntimeError as e:  # a tensor of the wrong shape
        problem = str(e).strip().splitlines()[-1].strip()
    if problem:
        raise DistilTuneError(f"the weights in '{path}' do not fit the network '{meta['factory']}' builds now ({problem})",
                              "use the factory code and arguments the network was saved with")
    return model.eval()  # as from_pretrained does; the trainer switches to train mode itself
