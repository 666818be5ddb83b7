"""GGUF model files (llama.cpp's format) as teachers or students: converted once into a model folder.

transformers reads a GGUF by dequantising every tensor to full precision (20-100 s for a 100M-1B
model); a run that did so at every start would spend more time loading than a short stage trains.
So a GGUF file is converted once into fp32 safetensors plus its tokenizer, in the cache under a key of
the file's size and its first and last bytes, and every later run loads that folder in seconds.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
from pathlib import Path

from .errors import DistilTuneError

MAGIC = b"GGUF"
GGUF_FIX = "give a GGUF model file (of an architecture transformers reads: llama, qwen2, gemma3, ...), or a model folder"


def is_gguf_name(name: str) -> bool:
    return isinstance(name, str) and name.lower().endswith(".gguf")


def file_key(path: Path, block: int = 1 << 22) -> str:
    """A key for a (possibly GB-sized) file without reading all of it: its size, first and last 4 MB."""
    h = hashlib.blake2b(digest_size=8)
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(block))
        f.seek(max(size - block, 0))
        h.update(f.read(block))
    return h.hexdigest()


def check_gguf(path: str) -> Path:
    """The file, when it exists and begins as a GGUF file does; one line otherwise."""
    p = Path(path)
    if not p.is_file():
        raise DistilTuneError(f"GGUF file '{path}' does not exist", "give the path of a .gguf model file")
    with open(p, "rb") as f:
        head = f.read(4)
    if head != MAGIC:
        raise DistilTuneError(f"'{path}' is not a GGUF file (it does not begin with the bytes 'GGUF')", GGUF_FIX)
    return p


def convert_gguf(folder: Path, filename: str, target: Path, note: str) -> str:
    """Dequantise ``folder/filename`` into the model folder ``target`` (written beside it, then renamed:
    a conversion killed part-way leaves no half folder behind)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[distiltune] converting {filename} to a model folder once (dequantising; about a minute)")
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=filename, dtype=torch.float32)
    except ImportError as e:
        raise DistilTuneError(f"reading a GGUF file needs the gguf package ({e})", "pip install gguf") from None
    except Exception as e:  # transformers names what it could not read (an architecture, a missing tensor)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DistilTuneError(f"could not read '{folder / filename}' as a causal language model: {first}",
                              GGUF_FIX) from None
    model.hf_quantizer = None  # dequantised already: a plain folder, which save_pretrained otherwise refuses
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    part = target.with_name(target.name + ".partial")
    shutil.rmtree(part, ignore_errors=True)
    model.save_pretrained(str(part))
    tok.save_pretrained(str(part))
    (part / ".verified").write_text(note + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(part, target)
    return str(target)


@functools.lru_cache(maxsize=32)
def _key(path: str, size: int, mtime_ns: int) -> str:
    return file_key(Path(path))  # a run names its model many times (checks, loading, its tokenizer): read once


def gguf_folder(path: str, cache: Path) -> str:
    """The model folder of a GGUF file, converted on first use and reused after."""
    p = check_gguf(path)
    st = p.stat()
    target = cache / "gguf" / f"{p.stem}-{_key(str(p.resolve()), st.st_size, st.st_mtime_ns)}"
    if (target / ".verified").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return convert_gguf(p.parent, p.name, target, f"converted from {p.resolve()}")


__all__ = ["check_gguf", "convert_gguf", "gguf_folder", "is_gguf_name"]
