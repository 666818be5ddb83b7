"""Teacher-output cache (offline distillation): the teacher's logits are computed once per
(teacher weights, teacher inputs, storage form) and reused every epoch, every stage and on --resume.

- Stored with ``datasets`` as an Arrow table on disk, memory-mapped (it need not fit in RAM).
- Keyed by example identity: each row's key is a hash of exactly what the teacher reads for it
  (its token ids, mask, ...), never its step or batch position. The table is joined to the training
  rows by that key, so shuffling, gradient accumulation and several processes all read the right row,
  and reordered or subset data reuses it.
- Named by a fingerprint of the teacher weights, the set of row keys (data and tokenisation) and the
  storage form; when one of them changes the cache is rebuilt and the line printed says which.
- Checked on first use: a few rows are recomputed and compared; a mismatch rebuilds it.
- Built in shards of rows, each written whole (temp folder + rename) as it is done, with its progress
  (rows/s, tokens/s) printed: a build killed part-way resumes at the first missing shard, not from
  zero (the expensive pass for a large teacher).
- ``topk``: for large label spaces (e.g. vocabularies) only the k largest logits of a row are kept,
  plus the log-mass of the missing ones at a grid of temperatures. Dense logits are rebuilt on the
  fly for the step's temperature (the missing classes share the teacher's exact remaining mass
  evenly), so every loss term reads them unchanged; with k = n they equal the full logits.
  ``benchmarks/topk_error.py`` measures the error this leaves. A language model's cache keeps its
  own per-token form (``models.lm.teacher_token_forms``: half precision, draws from the tail), named
  by the task's ``cache_form()``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Callable

import numpy as np

from ..constants import TAIL_TEMPERATURES  # noqa: F401 (re-exported: the grid of the top-k form's tail)
from .cache_forms import (COLUMNS, FULL, IDS, TOPK, collate, compress, dense, sparse_teacher,  # noqa: F401 (re-exported)
                          tail_at, teacher_logits_from)


def row_keys(ds, columns: list[str]) -> list[str]:
    """A content hash per row of the columns the teacher reads."""
    keys = []
    for batch in ds.select_columns(columns).iter(batch_size=1000):
        for i in range(len(batch[columns[0]])):
            row = json.dumps([np.asarray(batch[c][i]).tolist() for c in columns], separators=(",", ":"))
            keys.append(hashlib.sha1(row.encode()).hexdigest()[:20])
    return keys




def _keys(table) -> list[str]:
    return table.data.column("key").to_pylist()  # straight from Arrow (the table has no indices mapping here)


def has_cache(columns) -> bool:
    return any(c in (columns or []) for c in ("teacher_logits", "teacher_topk_values"))


class TeacherCache:
    """``attach(ds, t_ds, columns, predict)`` returns ``ds`` with the cached columns joined by row key."""

    def __init__(self, root: str, teacher_fp: str, topk: int | None = None, precision: str = "fp32",
                 verify_rows: int = 4, log: Callable[[str], None] = print, shard_rows: int = 2048,
                 form: dict | None = None):
        self.root, self.teacher_fp, self.topk, self.precision = root, teacher_fp, topk, precision
        self.form = form or {}  # a task's own storage settings (a language model's tail samples), part of the name
        self.verify_rows, self.log, self.shard_rows = verify_rows, log, shard_rows
        self.built_seconds: float | None = None  # set when this call computed the logits

    def attach(self, ds, t_ds, columns: list[str], predict: Callable) -> "object":
        from datasets import concatenate_datasets

        keys = row_keys(t_ds, columns)
        meta = {"teacher": self.teacher_fp, "inputs": hashlib.sha256("".join(sorted(set(keys))).encode()).hexdigest()[:16],
                "rows": len(set(keys)), "topk": self.topk, "precision": self.precision, "version": 2}
        if self.form:  # only where a task has one: other caches keep their names
            meta["form"] = self.form
        name = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
        path = os.path.join(self.root, name)
        table = self._load(path)
        if table is None:  # a subset of the rows a cache was built for (same teacher and form) reads that one
            for entry in sorted(os.listdir(self.root)) if os.path.isdir(self.root) else []:
                other = self._meta(os.path.join(self.root, entry))
                if other and all(other.get(k) == meta.get(k) for k in ("teacher", "topk", "precision", "version", "form")):
                    table = self._load(os.path.join(self.root, entry))
                    if table is not None and not set(keys) <= set(_keys(table)):
                        table = None
        if table is not None and not self._aligned(table, keys, t_ds, predict):
            table = None
        if table is None:
            self._explain(meta)
            table = self._build(path, meta, keys, t_ds, predict)
        index = {k: i for i, k in enumerate(_keys(table))}
        order = [index[k] for k in keys]
        if order != list(range(len(table))):
            table = table.select(order)  # an indices mapping over the memory-mapped table, no copy
        return concatenate_datasets([ds, table.remove_columns("key")], axis=1)

    # ---- internals ----
    @staticmethod
    def _meta(path: str) -> dict | None:
        f = os.path.join(path, "meta.json")
        return json.load(open(f)) if os.path.isfile(f) else None

    def _load(self, path: str):
        if not os.path.isfile(os.path.join(path, "meta.json")):
            return None
        try:
            return _read_shards(path)
        except Exception:  # a damaged cache is rebuilt, never trusted
            return None

    def _aligned(self, table, keys: list[str], t_ds, predict) -> bool:
        """First use of a stored cache: recompute a few rows and compare."""
        index = {k: i for i, k in enumerate(_keys(table))}
        if any(k not in index for k in keys):
            self.log("[distiltune] teacher cache lacks some rows; rebuilding it")
            return False
        rng = np.random.default_rng(0)
        rows = sorted(rng.choice(len(keys), size=min(self.verify_rows, len(keys)), replace=False).tolist())
        fresh = predict(t_ds.select(rows))
        stored = table.select([index[keys[r]] for r in rows])
        if isinstance(fresh, dict):  # a task's own compressed form: its kept values must agree
            ok = all(np.allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32), **self._tolerance())
                     and np.shape(a) == np.shape(b) for a, b in zip(stored["teacher_topk_values"], fresh["teacher_topk_values"]))
        elif "teacher_logits" in stored.column_names:
            ok = all(np.allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32), **self._tolerance())
                     and np.shape(a) == np.shape(b) for a, b in zip(stored["teacher_logits"], fresh))
        else:
            idx = np.asarray(stored["teacher_topk_indices"])
            ok = np.allclose(np.asarray(stored["teacher_topk_values"]), np.take_along_axis(fresh, idx, -1), **self._tolerance())
        if not ok:
            self.log(f"[distiltune] cached teacher logits disagree with the teacher on rows {rows}; rebuilding the cache")
        return ok

    def _tolerance(self) -> dict:
        # bf16 results move with the batch's padding; fp32 ones barely
        return {"rtol": 5e-2, "atol": 5e-2} if self.precision != "fp32" else {"rtol": 1e-3, "atol": 1e-3}

    def _explain(self, meta: dict) -> None:
        old = None
        for entry in sorted(os.listdir(self.root)) if os.path.isdir(self.root) else []:
            old = self._meta(os.path.join(self.root, entry)) or old
        if old is None:
            return
        what = {"teacher": "the teacher's weights changed", "inputs": "the data or its tokenisation changed",
                "topk": "teacher_cache_topk changed", "precision": "the teacher's precision changed",
                "form": "the cache's storage form changed (teacher_cache_tail_samples, or a new distiltune's format)"}
        changed = [what[k] for k in what if old.get(k) != meta.get(k)]
        if changed:
            self.log(f"[distiltune] teacher cache is stale ({'; '.join(changed)}); rebuilding it")

    def _build(self, path: str, meta: dict, keys: list[str], t_ds, predict):
        import time

        from datasets import Dataset

        t0 = time.perf_counter()
        first = {}
        for i, k in enumerate(keys):  # identical teacher inputs give identical outputs: one row each
            first.setdefault(k, i)
        unique, names = list(first.values()), list(first)
        tmp = path + ".partial"
        if self._meta(tmp) != meta:  # another build's leftovers (or none): start afresh
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(os.path.join(tmp, "shards"))
            with open(os.path.join(tmp, "meta.json"), "w") as f:
                json.dump(meta, f, indent=1)
        starts = list(range(0, len(unique), self.shard_rows))
        done = [i for i, _ in enumerate(starts) if os.path.isdir(_shard(tmp, i))]
        if done:
            rows_done = sum(min(self.shard_rows, len(unique) - starts[i]) for i in done)
            self.log(f"[distiltune] teacher cache: resuming a build that stopped, {rows_done} of {len(unique)} rows "
                     "already done")
        lengths = t_ds["length"] if "length" in t_ds.column_names else None
        rows_new = tokens_new = 0
        for i, a in enumerate(starts):
            if i in done:
                continue
            pick = unique[a:a + self.shard_rows]
            out = predict(t_ds.select(pick))
            if not isinstance(out, (list, dict)):
                out = np.asarray(out, dtype=np.float32)
            cols = compress(out, self.topk)
            features = _features(cols)
            cols = {c: [r.tolist() if isinstance(r, np.ndarray) else r for r in rows] for c, rows in cols.items()}
            _save_quietly(Dataset.from_dict({"key": names[a:a + self.shard_rows], **cols}, features=features),
                          _shard(tmp, i) + ".partial")
            os.replace(_shard(tmp, i) + ".partial", _shard(tmp, i))  # a shard is whole or absent
            rows_new += len(pick)
            tokens_new += int(sum(lengths[j] for j in pick)) if lengths is not None else 0
            if len(starts) > 1:
                secs = max(time.perf_counter() - t0, 1e-9)
                rate = f"{rows_new / secs:.1f} rows/s" + (f", {tokens_new / secs:,.0f} tokens/s" if tokens_new else "")
                self.log(f"[distiltune] teacher cache: shard {i + 1} of {len(starts)} ({min(a + len(pick), len(unique))} "
                         f"of {len(unique)} rows), {rate}")
        for entry in os.listdir(self.root):  # one cache per output folder: stale ones go once this one is whole
            if os.path.join(self.root, entry) not in (tmp, path):
                shutil.rmtree(os.path.join(self.root, entry), ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)  # complete or absent, never half-written
        self.built_seconds = time.perf_counter() - t0
        return _read_shards(path)


def _features(cols: dict):
    """Stored types: float32 values and int32 ids at each column's nesting (Arrow would infer float64
    and int64 from Python lists, twice the bytes: 592 instead of 296 a token for a language model's
    top-32), or the dtype of a column given as numpy arrays (a language model's half-precision values)."""
    from datasets import Features, List, Value

    def typed(x, leaf):
        if isinstance(x, np.ndarray):
            return typed(x.tolist() if x.ndim else x, leaf)
        return List(typed(x[0], leaf)) if isinstance(x, list) and x else (List(leaf) if isinstance(x, list) else leaf)

    out = {"key": Value("string")}
    for name, rows in cols.items():
        first = next((r for r in rows if not isinstance(r, (list, np.ndarray)) or len(r)), rows[0])
        if isinstance(first, np.ndarray):
            leaf = Value(str(first.dtype))
        else:
            leaf = Value("int32") if name in IDS else Value("float32")
        out[name] = typed(first, leaf)
    return Features(out)


def _save_quietly(table, path: str) -> None:
    """Save without datasets' per-save progress bar (one per shard would drown the shard lines)."""
    import datasets

    was_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        table.save_to_disk(path)
    finally:
        if not was_off:
            datasets.enable_progress_bars()


def _shard(folder: str, i: int) -> str:
    return os.path.join(folder, "shards", f"{i:05d}")


def _read_shards(path: str):
    """The cache's table: its shards joined, memory-mapped (no copy)."""
    from datasets import concatenate_datasets, load_from_disk

    shards = sorted(os.listdir(os.path.join(path, "shards")))
    parts = [load_from_disk(os.path.join(path, "shards", s)) for s in shards if not s.endswith(".partial")]
    if not parts:
        raise FileNotFoundError(path)
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)
