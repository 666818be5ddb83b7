"""Run an exported distiltune model with onnxruntime: load, encode, predict.

This file is self-contained on purpose (numpy, onnxruntime and, for text, tokenizers): ``distiltune
export`` copies it into every export folder as ``predict.py``, so the exported model serves without
distiltune, PyTorch or transformers installed::

    python predict.py "a gorgeous, witty, seductive movie"          # from inside the export folder
    python predict.py --variant fp32 --json "text one" "text two"
    python predict.py --input-file images.npy                       # networks that read tensors
    python predict.py "Peter Blackburn flew to Brussels ."           # token classification: entities and spans
    python predict.py $'Who flew to Brussels?\tPeter Blackburn flew to Brussels .'   # QA: question TAB context

``distiltune predict --model <export folder> ...`` runs the same code.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

META_FILE = "distiltune_export.json"
TEXT_KINDS = ("text", "words", "qa")  # models that read token ids: texts, words (NER), question + context (QA)


class ExportedModel:
    """An export folder: the ONNX session of one variant (``fp32`` or ``int8``), its metadata and,
    for text models, the tokenizer that travelled with it."""

    def __init__(self, folder: str, variant: str | None = None, threads: int = 0, spinning: bool = True):
        import onnxruntime as ort

        with open(os.path.join(folder, META_FILE)) as f:
            self.meta = json.load(f)
        files = self.meta["files"]
        self.variant = variant or self.meta.get("default", "fp32")
        if self.variant not in files:
            raise ValueError(f"this export has variants {', '.join(files)}, not '{self.variant}'")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # 0: onnxruntime's default (all physical cores)
        if not spinning:
            # Idle threads otherwise busy-wait for a while after each call, stealing CPU from
            # whatever runs next (other models timed side by side).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(os.path.join(folder, files[self.variant]), opts,
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.tokenizer = None
        if self.meta["kind"] in TEXT_KINDS:
            from tokenizers import Tokenizer

            m = self.meta
            tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
            # As the training tokenizer did: same sides, same pad ids (the re-check measured that).
            tok.enable_truncation(m["max_length"], direction=m.get("truncation_side", "right"))
            tok.enable_padding(pad_id=m["pad_token_id"], pad_token=m["pad_token"], pad_type_id=m.get("pad_token_type_id", 0),
                               direction=m.get("padding_side", "right"))
            self.tokenizer = tok
        self.pairs = len(self.meta.get("text_columns", [])) == 2

    def encode(self, texts: list) -> dict[str, np.ndarray]:
        """Model inputs for a list of texts (or ``(first, second)`` pairs), padded to the longest."""
        encs = self.tokenizer.encode_batch(texts)
        arrays = {"input_ids": [e.ids for e in encs], "attention_mask": [e.attention_mask for e in encs],
                  "token_type_ids": [e.type_ids for e in encs]}
        return {k: np.asarray(arrays[k], dtype=np.int64) for k in self.input_names}

    def logits(self, feed: dict) -> np.ndarray:
        """Logits for model inputs (numpy arrays, or anything ``np.asarray`` takes, e.g. CPU tensors)."""
        cast = {k: np.asarray(feed[k], dtype=np.int64 if self.meta["kind"] in TEXT_KINDS else np.float32)
                for k in self.input_names}
        return self.session.run(None, cast)[0]

    def predict(self, inputs, batch_size: int = 64) -> list[dict]:
        """Texts (or an array of network inputs) -> one ``{"label", "score"}`` (``{"value"}`` for regression) each.
        Runs in batches of similar length, so a long input file neither pads everything to its
        longest text nor builds one huge batch."""
        inputs = list(inputs) if self.tokenizer else np.asarray(inputs, dtype=np.float32)
        if len(inputs) == 0:
            raise ValueError("no inputs to predict")
        if self.tokenizer is not None:
            empty = [i for i, t in enumerate(inputs) if not all(isinstance(part, str) and part.strip()
                                                                for part in ((t,) if isinstance(t, str) else t))]
            if empty:
                raise ValueError(f"input {empty[0] + 1} of {len(inputs)} is empty (or only whitespace, or not text); "
                                 "the model would still answer, for no text at all")
        if self.tokenizer is None:
            want = self.session.get_inputs()[0].shape
            if inputs.ndim != len(want):
                raise ValueError(f"the model reads arrays of rank {len(want)} (shape {want}), one example per row; "
                                 f"got rank {inputs.ndim} {tuple(inputs.shape)}")
            order = np.arange(len(inputs))
        else:
            order = np.argsort([len(t if isinstance(t, str) else " ".join(t)) for t in inputs], kind="stable")
        logits = None
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            feed = self.encode([inputs[i] for i in idx]) if self.tokenizer else {self.input_names[0]: inputs[idx]}
            out = self.logits(feed)
            if logits is None:
                logits = np.zeros((len(inputs), out.shape[-1]), dtype=np.float32)
            logits[idx] = out
        if self.meta.get("task_type") == "regression":
            return [{"value": float(v)} for v in logits.reshape(-1)]
        z = logits - logits.max(-1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        names = self.meta.get("label_names") or [str(i) for i in range(probs.shape[-1])]
        return [{"label": names[int(p.argmax())], "score": float(p.max())} for p in probs]


    def entities(self, texts: list[str], batch_size: int = 64) -> list[dict]:
        """Token classification: each text is split into words (runs of letters and digits, and each
        punctuation mark, as CoNLL tokenises), tagged at each word's first sub-token, and the tagged
        words grouped into entities (B-X starts one, I-X continues it) with their character spans."""
        import re

        names = self.meta["label_names"]
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            # the rule of distiltune.data.words.split_words (this file runs without distiltune)
            spans = [[(m.start(), m.end()) for m in re.finditer(r"\w+(?:[-'.]\w+)*|[^\w\s]", t)] for t in chunk]
            if any(not s for s in spans):
                raise ValueError("a text has no words; pass texts with words in them")
            encs = self.tokenizer.encode_batch([[t[a:b] for a, b in s] for t, s in zip(chunk, spans)], is_pretokenized=True)
            arrays = {"input_ids": [e.ids for e in encs], "attention_mask": [e.attention_mask for e in encs],
                      "token_type_ids": [e.type_ids for e in encs]}
            logits = self.logits({k: np.asarray(arrays[k], dtype=np.int64) for k in self.input_names})
            for text, word_spans, enc, row in zip(chunk, spans, encs, logits):
                first = {}
                for pos, w in enumerate(enc.word_ids):
                    if w is not None and w not in first:
                        first[w] = pos
                z = row - row.max(-1, keepdims=True)
                probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
                found, current = [], None
                for w, (a, b) in enumerate(word_spans):
                    tag, score = ("O", 1.0) if w not in first else (names[int(probs[first[w]].argmax())], float(probs[first[w]].max()))
                    kind = tag[2:] if tag[:2] in ("B-", "I-") else None
                    if kind and current and tag.startswith("I-") and current["type"] == kind:
                        current.update(end=b, scores=current["scores"] + [score])
                        continue
                    current = {"type": kind, "start": a, "end": b, "scores": [score]} if kind else None
                    if current:
                        found.append(current)
                out.append({"entities": [{"type": e["type"], "text": text[e["start"]:e["end"]], "start": e["start"],
                                          "end": e["end"], "score": float(np.mean(e["scores"]))} for e in found]})
        return out


    def answers(self, pairs: list[tuple[str, str]]) -> list[dict]:
        """Extractive QA: for each (question, context), the context cut into the windows the model was
        trained on (max_length, sharing doc_stride tokens), and the best span over all of them: a
        start and an end token of the context, end not before start, at most max_answer_length tokens,
        scored by start logit + end logit. ``score`` is that span's start x end probability in its window."""
        m = self.meta
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(m["max_length"], stride=m.get("doc_stride", 0), strategy="only_second")
        out = []
        for question, context in pairs:
            enc = self.tokenizer.encode(question.lstrip(), context)
            windows = [enc] + list(enc.overflowing)
            n = max(len(w.ids) for w in windows)
            feed = {"input_ids": np.full((len(windows), n), m["pad_token_id"], dtype=np.int64),
                    "attention_mask": np.zeros((len(windows), n), dtype=np.int64),
                    "token_type_ids": np.full((len(windows), n), m.get("pad_token_type_id", 0), dtype=np.int64)}
            for i, w in enumerate(windows):
                feed["input_ids"][i, :len(w.ids)] = w.ids
                feed["attention_mask"][i, :len(w.ids)] = 1
                feed["token_type_ids"][i, :len(w.ids)] = w.type_ids
            logits = self.logits(feed)  # (windows, 2, n)
            best = None
            for w, row in zip(windows, logits):
                ctx = [k for k, sid in enumerate(w.sequence_ids) if sid == 1 and w.offsets[k][1] > w.offsets[k][0]]
                if not ctx:
                    continue
                s, e = row[0, :len(w.ids)], row[1, :len(w.ids)]
                ps, pe = np.exp(s - s.max()) / np.exp(s - s.max()).sum(), np.exp(e - e.max()) / np.exp(e - e.max()).sum()
                top_s = [k for k in np.argsort(-s) if k in set(ctx)][:20]
                top_e = [k for k in np.argsort(-e) if k in set(ctx)][:20]
                for i in top_s:
                    for j in top_e:
                        if j < i or j - i + 1 > m.get("max_answer_length", 30):
                            continue
                        if best is None or s[i] + e[j] > best[0]:
                            best = (float(s[i] + e[j]), w.offsets[i][0], w.offsets[j][1], float(ps[i] * pe[j]))
            if best is None:
                out.append({"answer": "", "start": 0, "end": 0, "score": 0.0})
            else:
                out.append({"answer": context[best[1]:best[2]], "start": int(best[1]), "end": int(best[2]), "score": best[3]})
        return out


class OneLineParser(argparse.ArgumentParser):
    """Run as ``python predict.py``: a bad input is one line, ``predict.py: error: ...``, and exit 2
    (argparse's own error prints the usage first)."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} -> fix: see `python {self.prog} --help`\n")
        sys.exit(2)


def main(argv: list[str] | None = None, folder: str | None = None, parser=OneLineParser) -> int:
    p = parser(prog="distiltune predict" if folder else None, description="Predict with an exported distiltune model (onnxruntime).")
    if folder is None:
        p.add_argument("--model", default=os.path.dirname(os.path.abspath(__file__)), help="Export folder (default: this file's).")
    p.add_argument("texts", nargs="*", help="Texts to classify (or one per line on stdin); for sentence-pair models "
                                            "a tab separates the two sentences, for question answering the question "
                                            "and its context.")
    p.add_argument("--input-file", help="For networks that read tensors: a .npy array, one example per row.")
    p.add_argument("--variant", choices=["fp32", "int8"], help="Which exported file to run (default: the export's default).")
    p.add_argument("--json", action="store_true", help="Print one JSON object per input.")
    args = p.parse_args(argv)
    model = ExportedModel(folder or args.model, args.variant)
    if model.tokenizer is not None:
        if args.input_file:
            p.error("--input-file is for networks that read tensors; this model reads text: pass texts")
        texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
        if not texts:
            p.error("no texts given: pass them as arguments or one per line on stdin")
        if model.pairs:
            bad = [t for t in texts if "\t" not in t]
            if bad:
                p.error(f"this model reads sentence pairs; separate the two sentences with a tab (not in: {bad[0][:40]!r})")
            inputs = [tuple(t.split("\t", 1)) for t in texts]
        else:
            inputs = [(t,) for t in texts]
        empty = [i for i, parts in enumerate(inputs, 1) if not all(part.strip() for part in parts)]
        if empty:  # the model would still answer, with a label for no text at all
            which = f"text {empty[0]} of {len(texts)}" + (f" (and {len(empty) - 1} more)" if len(empty) > 1 else "")
            part = "has an empty sentence" if model.pairs else "is empty"
            p.error(f"{which} {part} (or only whitespace); pass texts with words in them")
        if not model.pairs:
            inputs = texts
        shown = texts
        if model.meta["kind"] == "words":
            return _print_entities(model, texts, args.json)
        if model.meta["kind"] == "qa":
            return _print_answers(model, inputs, args.json)
    else:
        if not args.input_file:
            p.error("this model reads tensors: pass --input-file examples.npy")
        inputs = np.load(args.input_file, allow_pickle=False)
        shown = [f"{args.input_file}[{i}]" for i in range(len(inputs))]
    for text, out in zip(shown, model.predict(inputs)):
        if args.json:
            print(json.dumps({"input": text, **out}))
        elif "label" in out:
            print(f"{out['label']}\t{out['score']:.3f}\t{text}")
        else:
            print(f"{out['value']:.4f}\t{text}")
    return 0


def _print_entities(model, texts: list[str], as_json: bool) -> int:
    """Token classification: each text, then one line per entity (type, score, character span, text)."""
    for text, out in zip(texts, model.entities(texts)):
        if as_json:
            print(json.dumps({"input": text, **out}))
            continue
        print(text)
        for e in out["entities"] or [{"type": "-", "score": 0.0, "start": 0, "end": 0, "text": "(no entities)"}]:
            print(f"  {e['type']}\t{e['score']:.3f}\t{e['start']}-{e['end']}\t{e['text']}")
    return 0


def _print_answers(model, pairs: list[tuple[str, str]], as_json: bool) -> int:
    """Extractive QA: the answer of each (question, context), its score and character span in the context."""
    for (question, context), out in zip(pairs, model.answers(pairs)):
        if as_json:
            print(json.dumps({"question": question, **out}))
        else:
            print(f"{out['answer'] or '(no answer)'}\t{out['score']:.3f}\t{out['start']}-{out['end']}\t{question}")
    return 0


def _standalone() -> int:
    """``python predict.py``: errors from the model files, onnxruntime or numpy are one line too."""
    try:
        return main()
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a damaged export folder, an unreadable --input-file, an input of the wrong shape
        msg = (str(e).strip().splitlines() or [""])[0][:300]
        sys.stderr.write(f"{os.path.basename(__file__)}: error: {type(e).__name__}: {msg} -> fix: see `python "
                         f"{os.path.basename(__file__)} --help`; re-export the model if its folder was changed\n")
        return 2


if __name__ == "__main__":
    sys.exit(_standalone())
