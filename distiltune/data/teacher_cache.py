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
  ``benchmarks/topk_error.py`` measures the error this leaves.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
from typing import Callable

import numpy as np
import torch

FULL = ("teacher_logits",)
TOPK = ("teacher_topk_values", "teacher_topk_indices", "teacher_tail_lse")
COLUMNS = FULL + TOPK


def row_keys(ds, columns: list[str]) -> list[str]:
    """A content hash per row of the columns the teacher reads."""
    keys = []
    for batch in ds.select_columns(columns).iter(batch_size=1000):
        for i in range(len(batch[columns[0]])):
            row = json.dumps([np.asarray(batch[c][i]).tolist() for c in columns], separators=(",", ":"))
            keys.append(hashlib.sha1(row.encode()).hexdigest()[:20])
    return keys


# Temperatures at which the tail's log-sum-exp is stored; between them log-mass is interpolated in 1/T
# (log-sum-exp is smooth and convex in 1/T), so every temperature a schedule passes through is covered.
TAIL_TEMPERATURES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)


def compress(logits, k: int | None) -> dict[str, list]:
    """Full logits, or the top-k form: the k largest values and their indices, plus the log-sum-exp
    of the missing logits at each of TAIL_TEMPERATURES (their exact softened mass there). A list of
    arrays (one (words, C) array per row: word-level tasks) is stored whole, row by row. A dict holds
    columns a task compressed itself (a language model's per-token top-k: never a dense vocabulary)."""
    if isinstance(logits, dict):
        return logits
    if isinstance(logits, list):
        if k is not None:
            raise ValueError("teacher_cache_topk applies to one logit vector per row, not to per-word outputs")
        return {"teacher_logits": [np.asarray(a, dtype=np.float32).tolist() for a in logits]}
    n = logits.shape[-1]
    if k is None or k > n:
        return {"teacher_logits": logits.astype(np.float32).tolist()}
    idx = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    vals = np.take_along_axis(logits, idx, axis=-1)
    if k == n:  # nothing missing: the tail is never read
        tail = np.zeros((len(logits), len(TAIL_TEMPERATURES)))
    else:
        rest = logits.astype(np.float64)
        np.put_along_axis(rest, idx, -np.inf, axis=-1)
        hi = rest.max(-1, keepdims=True)
        tail = np.stack([(hi / t + np.log(np.exp((rest - hi) / t).sum(-1, keepdims=True)))[:, 0]
                         for t in TAIL_TEMPERATURES], axis=-1)
    return {"teacher_topk_values": vals.astype(np.float32).tolist(), "teacher_topk_indices": idx.astype(np.int64).tolist(),
            "teacher_tail_lse": tail.astype(np.float32).tolist()}


def tail_at(tail_lse: torch.Tensor, temperature: float) -> torch.Tensor:
    """The tail's log-sum-exp at ``temperature`` from its values on the TAIL_TEMPERATURES grid (last
    axis): exact on the grid, linear in 1/T between grid points, the end segment's slope beyond."""
    t = float(temperature)
    # the grid segment in plain Python: no small tensors to build and read back on every step
    beta = [1.0 / x for x in TAIL_TEMPERATURES]  # descending
    b = min(max(1.0 / t, beta[-1]), beta[0])
    j = min(max(bisect.bisect_left([-x for x in beta], -b), 1), len(beta) - 1)
    w = (b - beta[j - 1]) / (beta[j] - beta[j - 1])
    lo, hi = tail_lse[..., j - 1].double(), tail_lse[..., j].double()
    lse = lo * (1 - w) + hi * w
    if 1.0 / t != b:  # outside the grid: extend the end segment's slope
        lse = lse + (hi - lo) / (beta[j] - beta[j - 1]) * (1.0 / t - b)
    return lse


def dense(values: torch.Tensor, indices: torch.Tensor, tail_lse: torch.Tensor, n: int,
          temperature: float = 1.0) -> torch.Tensor:
    """Rebuild (batch, n) logits from the top-k form for a loss at ``temperature``: the k kept
    logits as they were, and the n - k missing ones all equal, at the value that gives them together
    the teacher's tail mass at that temperature (the tail's shape within is not kept)."""
    k = values.shape[-1]
    if k >= n:
        return torch.empty(values.shape[0], n, device=values.device).scatter_(1, indices.long(), values.float())
    t = float(temperature)
    lse = tail_at(tail_lse, t)
    fill = (t * (lse - np.log(n - k))).float()  # divided by T in the loss: log(mass / (n - k)) per class
    out = fill.reshape(-1, 1).expand(values.shape[0], n).clone()
    return out.scatter_(1, indices.long(), values.float())


def token_topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A language model's per-token top-k form, computed where the logits are (a GPU): for (tokens,
    vocabulary) logits, the k largest (fp32), their ids and the tail's log-sum-exp at each of
    TAIL_TEMPERATURES, a chunk of tokens at a time (no fp32 copy of the whole vocabulary matrix)."""
    rows = max(1, (1 << 23) // max(logits.shape[-1], 1))
    vals, ids, tails = [], [], []
    for a in range(0, logits.shape[0], rows):
        z = logits[a:a + rows].float()
        v, i = z.topk(min(k, z.shape[-1]), dim=-1)
        vals.append(v)
        ids.append(i)
        if i.shape[-1] >= z.shape[-1]:  # nothing missing: the tail is never read
            tails.append(z.new_zeros(len(z), len(TAIL_TEMPERATURES)))
            continue
        rest = z.scatter(-1, i, float("-inf"))
        tails.append(torch.stack([torch.logsumexp(rest / t, dim=-1) for t in TAIL_TEMPERATURES], dim=-1))
    return torch.cat(vals), torch.cat(ids), torch.cat(tails)


def sparse_teacher(inputs: dict, positions: torch.Tensor, vocab: int, temperature: float = 1.0):
    """Pop a language model's cached per-token columns from a batch and place them at ``positions``
    ((batch, length) bool: the response tokens, in order) as a (batch, length, k)
    :class:`~distiltune.losses.vocab.TopK` at the step's temperature; None when not cached.
    Positions outside ``positions`` get the first token's entries, which no term reads (masked)."""
    from ..losses.vocab import TopK

    if "teacher_topk_values" not in inputs:
        return None
    vals, idx, tail = (inputs.pop(c) for c in TOPK)  # (batch, tokens, k), (batch, tokens, k), (batch, tokens, grid)
    where = (positions.long().cumsum(-1) - 1).clamp(min=0)  # the j-th response position reads entry j
    where = where.clamp(max=max(vals.shape[1] - 1, 0))

    def place(x):
        return x.gather(1, where.unsqueeze(-1).expand(*where.shape, x.shape[-1]))

    return TopK(place(idx).long(), place(vals).float(), tail_at(place(tail), temperature).float(), vocab,
                float(temperature))


def collate(features: list[dict]) -> dict[str, torch.Tensor]:
    """The cached columns of a batch's rows, as tensors (every data collator uses this). Rows of
    different shapes (one (words, C) array per row for token classification) are zero-padded on
    every axis to the batch's largest; the collator's masks say which entries are real."""
    out = {}
    for col in COLUMNS:
        if col in features[0]:
            dtype = torch.long if col == "teacher_topk_indices" else torch.float32
            rows = [np.asarray(f[col]) for f in features]
            shape = tuple(max(sizes) for sizes in zip(*(r.shape for r in rows))) if rows[0].ndim else ()
            if any(r.shape != shape for r in rows):
                padded = np.zeros((len(rows), *shape), dtype=np.float32)
                for i, r in enumerate(rows):
                    padded[(i, *(slice(0, n) for n in r.shape))] = r
                out[col] = torch.from_numpy(padded).to(dtype)
            else:
                out[col] = torch.as_tensor(np.asarray(rows), dtype=dtype)
    return out


def teacher_logits_from(inputs: dict, num_classes: int, temperature: float = 1.0) -> torch.Tensor | None:
    """Pop the cached columns from a batch and return dense teacher logits (None when not cached);
    from the top-k form they are rebuilt for the step's temperature."""
    full = inputs.pop("teacher_logits", None)
    if full is not None:
        return full
    if "teacher_topk_values" not in inputs:
        return None
    vals, idx, tail = (inputs.pop(c) for c in TOPK)
    return dense(vals, idx, tail, num_classes, temperature)


def _keys(table) -> list[str]:
    return table.data.column("key").to_pylist()  # straight from Arrow (the table has no indices mapping here)


def has_cache(columns) -> bool:
    return any(c in (columns or []) for c in ("teacher_logits", "teacher_topk_values"))


class TeacherCache:
    """``attach(ds, t_ds, columns, predict)`` returns ``ds`` with the cached columns joined by row key."""

    def __init__(self, root: str, teacher_fp: str, topk: int | None = None, precision: str = "fp32",
                 verify_rows: int = 4, log: Callable[[str], None] = print, shard_rows: int = 2048):
        self.root, self.teacher_fp, self.topk, self.precision = root, teacher_fp, topk, precision
        self.verify_rows, self.log, self.shard_rows = verify_rows, log, shard_rows
        self.built_seconds: float | None = None  # set when this call computed the logits

    def attach(self, ds, t_ds, columns: list[str], predict: Callable) -> "object":
        from datasets import concatenate_datasets

        keys = row_keys(t_ds, columns)
        meta = {"teacher": self.teacher_fp, "inputs": hashlib.sha256("".join(sorted(set(keys))).encode()).hexdigest()[:16],
                "rows": len(set(keys)), "topk": self.topk, "precision": self.precision, "version": 2}
        name = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
        path = os.path.join(self.root, name)
        table = self._load(path)
        if table is None:  # a subset of the rows a cache was built for (same teacher and form) reads that one
            for entry in sorted(os.listdir(self.root)) if os.path.isdir(self.root) else []:
                other = self._meta(os.path.join(self.root, entry))
                if other and all(other.get(k) == meta[k] for k in ("teacher", "topk", "precision", "version")):
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
                "topk": "teacher_cache_topk changed", "precision": "the teacher's precision changed"}
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
            _save_quietly(Dataset.from_dict({"key": names[a:a + self.shard_rows], **compress(out, self.topk)}),
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
