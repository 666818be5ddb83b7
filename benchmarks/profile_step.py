"""Where a training step's time goes: torch.profiler over a window of steps of the benchmark's job.

    python benchmarks/profile_step.py --models tiny-bert                 # CPU: op and sync counts
    python benchmarks/profile_step.py --device cuda                      # GPU: + kernels, GPU busy time

For each way of training (distiltune distilling with the cache, distiltune fine-tuning, the bare
student loop of ``run.py``) it trains on the same rows and models as ``benchmarks/run.py``, skips
``--warmup`` steps, times ``--steps`` steps without the profiler, then profiles ``--steps`` more,
and stops. It prints, per optimizer step:

- ``ms``: wall time without the profiler (the GPU synchronised at both ends of the window);
- ``ops``: aten operators issued from Python or the autograd engine (each costs host dispatch time);
- ``leaf_ops``: aten operators that call no other (on a GPU, roughly one kernel launch each);
- ``syncs``: ``.item()`` / ``bool(tensor)`` calls from Python (``aten::_local_scalar_dense``): on a
  GPU each one stalls the host until the device has drained its queue. Counted on a CPU too, where
  it also counts reads of scalars that live on the host anyway (a non-fused AdamW reads its step
  counters so);
- on a GPU, ``kernels`` (device events: kernels, copies and memsets), ``cuda_waits`` (runtime calls that block the host) and
  ``gpu_busy_ms`` (kernel time): ``gpu_busy_ms`` far below ``ms`` means the step is bound by the
  host, not by the device;
- the operators with the most self CPU time.

Ends with one JSON line of those figures per way. A diagnostic, not a benchmark: the windows of
the three ways hold different batches (the lengths differ), so compare ``ms`` loosely and counts exactly.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WAYS = ("distill", "finetune", "plain_student")
# CUDA runtime calls that block the host until the device catches up
CUDA_WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


class StepWindow:
    """Times steps [warmup, warmup + n), profiles [warmup + n, warmup + 2n), then asks to stop."""

    def __init__(self, warmup: int, n: int, cuda: bool):
        self.warmup, self.n, self.cuda = warmup, n, cuda
        self.prof, self.result, self._t0 = None, None, None

    def _now(self) -> float:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def after_step(self, step: int) -> bool:
        """Call after optimizer step ``step`` (1-based); True once the window is done."""
        import torch
        from torch.profiler import ProfilerActivity, profile

        if step == self.warmup:
            self._t0 = self._now()
        elif step == self.warmup + self.n:
            self.ms = (self._now() - self._t0) * 1000 / self.n
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
            self.prof = profile(activities=acts)
            self.prof.start()
        elif step == self.warmup + 2 * self.n:
            if self.cuda:
                torch.cuda.synchronize()
            self.prof.stop()
            self.result = summarise(self.prof, self.n, self.ms)
            return True
        return False


def _python_level(e) -> bool:
    p = e.cpu_parent
    while p is not None and p.name.startswith("aten::"):
        if p.name not in ("aten::item", "aten::is_nonzero"):
            return False
        p = p.cpu_parent
    return True


def summarise(prof, n: int, ms: float) -> dict:
    from torch.autograd import DeviceType

    events = list(prof.events())
    aten = [e for e in events if e.name.startswith("aten::") and e.device_type == DeviceType.CPU]
    top = [e for e in aten if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    leaf = [e for e in aten if not any(c.name.startswith("aten::") for c in e.cpu_children)]
    # read-backs issued from Python (.item(), bool(tensor)), not those inside a CPU kernel's own code
    syncs = [e for e in aten if e.name == "aten::_local_scalar_dense" and _python_level(e)]
    kernels = [e for e in events if e.device_type == DeviceType.CUDA]
    out = {"ms": round(ms, 3), "ops": round(len(top) / n, 1), "leaf_ops": round(len(leaf) / n, 1),
           "syncs": round(len(syncs) / n, 2)}
    if kernels:
        out["kernels"] = round(len(kernels) / n, 1)
        waits = [e for e in events if e.name in CUDA_WAITS]
        out["cuda_waits"] = round(len(waits) / n, 2)
        out["gpu_busy_ms"] = round(sum(e.time_range.elapsed_us() for e in kernels) / 1000 / n, 3)
    by_name: dict[str, float] = {}
    for e in aten:
        by_name[e.name] = by_name.get(e.name, 0.0) + e.self_cpu_time_total
    out["top_self_cpu_ms"] = {k: round(v / 1000 / n, 3) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])[:12]}
    # where the syncs come from: the nearest Python-visible caller op of each
    callers: dict[str, int] = {}
    for e in syncs:
        p = e.cpu_parent
        while p is not None and p.cpu_parent is not None and p.cpu_parent.name.startswith("aten::"):
            p = p.cpu_parent
        name = p.name if p is not None else e.name
        callers[name] = callers.get(name, 0) + 1
    out["sync_ops"] = {k: round(v / n, 2) for k, v in callers.items()}
    return out


def profile_way(way: str, spec: dict, warmup: int, steps: int) -> dict:
    import torch
    from transformers import TrainerCallback

    import run

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    texts, labels = run.load_rows(spec)
    teacher, t_tok, student, s_tok = run.load_models(spec)
    window = StepWindow(warmup, steps, spec["device"] == "cuda")
    if way == "plain_student":
        import peers

        peers.run_plain_student(spec, teacher, t_tok, student, s_tok, texts, labels, on_step=window.after_step)
    else:
        class Hook(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if window.after_step(state.global_step):
                    control.should_training_stop = True

        run.run_distiltune(spec, teacher, t_tok, student, s_tok, texts, labels, way, callbacks=[Hook()])
    if window.result is None:
        raise SystemExit(f"{way}: the job ended before step {warmup + 2 * steps}; give more --rows")
    return window.result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--models", choices=["demo", "random-bert", "tiny-bert"], default=None,
                    help="as in run.py (default: random-bert on a GPU, demo on a CPU)")
    ap.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS))
    ap.add_argument("--warmup", type=int, default=20, help="steps before the window (new shapes, caches)")
    ap.add_argument("--steps", type=int, default=20, help="steps timed, then as many profiled")
    ap.add_argument("--rows", type=int, default=None, help="rows in the job (default: enough for the window)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tokenizer", default=None, help="as in run.py, for random-bert / tiny-bert")
    ap.add_argument("--distiltune-args", default="{}", help="JSON of extra distiltune config keys")
    args = ap.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        ap.error("--warmup and --steps must be at least 1")
    sys.path.insert(0, HERE)
    from tv_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    import warnings

    warnings.filterwarnings("ignore")
    import run

    extra = run.distiltune_args(ap, args.distiltune_args)

    models = args.models or ("random-bert" if args.device == "cuda" else "demo")
    work = tempfile.mkdtemp(prefix="distiltune-profile-")
    need = (args.warmup + 2 * args.steps + 2) * args.batch_size
    spec = dict(device=args.device, rows=args.rows or need, epochs=1, batch_size=args.batch_size, lr=5e-5,
                temperature=4.0, alpha=0.5, seed=42, threads=args.threads or os.cpu_count(), work=work,
                teacher="demo:all-mpnet-base-v2", student="demo:all-MiniLM-L6-v2", models=models,
                distiltune_args=extra)
    if models != "demo":
        from distiltune.models.hf import resolve_path

        spec["teacher"], spec["student"] = run.random_bert(work, args.tokenizer or resolve_path("demo:all-MiniLM-L6-v2"),
                                                           models)
    print(f"[profile] {models} models on {args.device}, batch {args.batch_size}, {spec['threads']} threads: "
          f"{args.warmup} warm-up steps, {args.steps} timed, {args.steps} profiled", flush=True)
    results = {}
    for way in args.ways:
        results[way] = r = profile_way(way, {**spec, "work": os.path.join(work, way)}, args.warmup, args.steps)
        extra = (f", {r['kernels']} kernels, {r['cuda_waits']} CUDA waits, GPU busy {r['gpu_busy_ms']} ms"
                 if "kernels" in r else "")
        print(f"\n[profile] {way}: {r['ms']} ms/step, {r['ops']} ops ({r['leaf_ops']} leaf), {r['syncs']} syncs{extra}")
        print(f"  syncs from: {r['sync_ops']}")
        for name, v in r["top_self_cpu_ms"].items():
            print(f"  {v:8.3f} ms  {name}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
