"""Which precision ``mixed_precision: auto`` means on this machine."""
from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=None)
def cpu_supports_bf16() -> bool:
    """bf16 autocast on this CPU only when it has bf16 instructions *and* they are faster here:
    with AMX, or on some avx512_bf16 cores, bf16 matmuls beat fp32; on others (measured: an Intel
    Xeon with avx512_bf16 but no AMX) BERT inference ran 2x slower in bf16. So time one
    transformer-sized matmul both ways (~0.3 s, once per process)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    if "amx_bf16" in flags:
        return True
    if "avx512_bf16" not in flags:
        return False
    import time

    x, w = torch.randn(1024, 768), torch.randn(3072, 768)

    def best(bf16: bool) -> float:
        times = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for _ in range(4):
                t0 = time.perf_counter()
                torch.nn.functional.linear(x, w)
                times.append(time.perf_counter() - t0)
        return min(times[1:])

    return best(True) < 0.9 * best(False)


def resolve(mixed_precision: str) -> tuple[bool, bool]:
    """``(bf16, fp16)`` for a ``mixed_precision`` setting on this machine."""
    mp = mixed_precision
    if mp == "auto":
        if torch.cuda.is_available():
            mp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            mp = "bf16" if cpu_supports_bf16() else "no"
    if mp == "fp16" and not torch.cuda.is_available():
        mp = "no"  # fp16 autocast on CPU is slow and unsupported by the Trainer
    return mp == "bf16", mp == "fp16"
