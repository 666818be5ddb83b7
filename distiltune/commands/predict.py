"""``distiltune predict``: an exported model in onnxruntime (no PyTorch or transformers import)."""
from __future__ import annotations

import os

from ..errors import DistilTuneError
from .args import Args


def main(argv: list[str]) -> int:
    from ..export.predict import META_FILE, main as predict_main

    pre = Args(prog="distiltune predict", add_help=False)
    pre.add_argument("--model", required="-h" not in argv and "--help" not in argv)
    known, rest = pre.parse_known_args(argv)
    if known.model and not os.path.isfile(os.path.join(known.model, META_FILE)):
        raise DistilTuneError(f"{known.model} is not an exported model (no {META_FILE})",
                              f"export it first: distiltune export --model {known.model} --quantize int8")
    try:
        return predict_main(rest, folder=known.model, parser=Args)
    except DistilTuneError:
        raise
    except Exception as e:  # onnxruntime / tokenizers / numpy errors on the user's input or a damaged export folder
        raise DistilTuneError(f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
                              "see `distiltune predict --help`; re-export the model if its folder was changed") from None
