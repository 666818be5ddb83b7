"""``distiltune losses``: the registered loss terms and presets."""
from __future__ import annotations


def main() -> int:
    from ..losses import LOSSES
    from ..losses.presets import PRESETS

    print("loss terms (losses: [name, name:weight, {name: ..., weight: ..., <options>}]):")
    for name in LOSSES.names():
        print(f"  {name:<14} {LOSSES.get(name).description}")
    print("presets (preset: <name>):")
    for name, p in PRESETS.items():
        print(f"  {name:<14} {p['about']}")
    return 0
