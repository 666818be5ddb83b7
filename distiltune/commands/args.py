"""The command line's argument parser: a bad flag is one DistilTuneError line (exit 2)."""
from __future__ import annotations

import argparse

from ..errors import DistilTuneError


class Args(argparse.ArgumentParser):
    """argparse, but a bad flag is one DistilTuneError line (exit 2), not usage plus an error."""

    def error(self, message):
        raise DistilTuneError(message, f"see `{self.prog} --help`")
