"""Causal language models (decoder LLMs): responses to prompts, chats or plain text, learnt token by token.

The teacher's output for a row is, per response token, its top-k log-probabilities, their ids, the
tail's log-sum-exp on a grid of temperatures (``teacher_cache_topk``, default 32) and a few ids drawn
from the tail (``teacher_cache_tail_samples``, default 10): never a dense ``length x vocabulary``
matrix. Token-level terms (kd, reverse_kl, js, gjsd, tv) compare the two
models' next-token distributions at the response tokens, a chunk of positions at a time; ``ce`` is
the next-token cross-entropy on the gold responses. Teacher and student must share a tokenizer
(output layers padded to different sizes are aligned on the shared ids); across tokenizers,
distillation goes through generated text, which this task refuses to fake.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.lm_collate import LMCollator
from ..data.lm_data import form_columns, lm_columns, load_lm_data
from ..data.lm_rows import check_prompt_lengths, check_same_rendering, encode_lm, lm_form
from ..errors import DistilTuneError
from ..models import files as MF
from ..models import hf as M
from ..models.inference import _autocast
from ..models.lm import agreement_on_rows, generation_speed, teacher_token_forms, token_scores
from .base import Loaded
from .text_classification import TextClassification, pad_multiple

DEFAULT_TOPK = 32  # per token: DistillKit's recommended budget is of this order (about 300 bytes a token)
DEFAULT_TAIL_SAMPLES = 10  # with the top 32 in half precision, 292 bytes a token (benchmarks/topk_error.py --lm)


def lm_tokenizer(name: str):
    """The tokenizer as training pads it: right padding, and the end-of-sequence token as the pad
    token where the model has none (the labels mask padding, so it is never learnt)."""
    tok = M.load_tokenizer(name)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


class CausalLM(TextClassification):
    name = "causal_lm"
    default_temperature = 1.0  # a vocabulary's tail at T = 4 holds most of the mass no top-k cache keeps
    pipeline_tag = "text-generation"
    export_kind = "lm"
    head = "ForCausalLM"

    @staticmethod
    def auto_class():
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    @classmethod
    def load_data(cls, cfg):
        return load_lm_data(cfg)

    def __init__(self, cfg, data):
        super().__init__(cfg, data)
        self.columns = lm_columns(cfg)
        self.form = lm_form(data.text_columns, **self.columns)
        self.topk = cfg.teacher_cache_topk or DEFAULT_TOPK
        self.tail_samples = DEFAULT_TAIL_SAMPLES if cfg.teacher_cache_tail_samples is None else cfg.teacher_cache_tail_samples

    # ---- checks ----
    @classmethod
    def check_config(cls, cfg, problems) -> None:
        refusals = [
            (bool(cfg.augment), "augment edits words of a text; a language model's rows are learnt token by token",
             "remove augment (give unlabeled_file text instead)"),
            (cfg.online_teacher_lr is not None, "online_teacher_lr is built for sequence classification",
             "remove online_teacher_lr"),
            (bool(cfg.text_pair_column), "a language model reads one text, prompt or chat per row, not text pairs",
             "remove text_pair_column"),
            (bool(cfg.export), "ONNX export of causal LMs is not built: the saved model folder loads with "
             "transformers.pipeline('text-generation') and serving engines", "remove export"),
        ]
        for bad, problem, fix in refusals:
            if bad:
                problems.found.append(DistilTuneError(f"task_type causal_lm: {problem}", fix))

    def check_models(self, problems) -> None:
        """Folders, causal-LM architectures, one tokenizer for both models (before anything loads),
        prompts that fit, and chat templates that render rows alike for both."""
        from transformers import AutoConfig

        cfg = self.cfg
        for role in ("teacher", "student"):
            name = getattr(cfg, role)
            if not name or name == "from_teacher":
                continue
            with problems.check():
                path = M.resolve_path(name)
                MF.check_folder(path, name, role)
                conf = AutoConfig.from_pretrained(path)
                arch = (conf.architectures or ["?"])[0]
                if not arch.endswith("ForCausalLM"):
                    raise DistilTuneError(f"the {role} '{name}' is a {arch}, not a causal language model",
                                          "give a decoder LLM (an *ForCausalLM model), or another task_type")
                rows, tokens = getattr(conf.get_text_config(), "vocab_size", None), len(lm_tokenizer(name))
                if rows is not None and rows < tokens:  # padded output layers (more rows) are fine: aligned in training
                    raise DistilTuneError(f"the {role} '{name}' has {rows} output rows but its tokenizer has {tokens} "
                                          "tokens, so some tokens could never be predicted",
                                          "give a model whose output layer covers its tokenizer (resize_token_embeddings)")
                if role == "teacher" and cfg.student == "from_teacher" and cfg.student_layers:
                    M.check_student_layers(list(cfg.student_layers), conf.get_text_config().num_hidden_layers)
                if cfg.teacher_cache_topk and rows is not None and cfg.teacher_cache_topk > rows:
                    raise DistilTuneError(f"teacher_cache_topk={cfg.teacher_cache_topk} is more than the {rows} tokens of "
                                          f"the {role}'s vocabulary", f"give teacher_cache_topk between 1 and {rows} "
                                          f"(default {DEFAULT_TOPK}: the top 32 logits and the exact tail mass)")
        with problems.check():
            s_tok = lm_tokenizer(cfg.student if cfg.student != "from_teacher" else cfg.teacher)
            t_tok = lm_tokenizer(cfg.teacher) if cfg.teacher else None
            splits = {"train": self.data.train, "unlabeled": self.data.unlabeled, "validation": self.data.validation,
                      "test": self.data.test}
            for role, tok in (("student", s_tok), ("teacher", t_tok)):
                if tok is not None:
                    check_prompt_lengths(splits, tok, role, self.form, self.columns, self.max_length(tok))
            if cfg.sequence_kd and self.form == "text":
                raise DistilTuneError("sequence_kd has the teacher answer prompts, but plain-text rows have none",
                                      "give prompt/response or messages rows, or remove sequence_kd")
            if cfg.sequence_kd and (self.data.unlabeled is None or len(self.data.unlabeled) == 0):
                raise DistilTuneError("sequence_kd: every training row keeps its gold response, so the teacher has no "
                                      "prompt to answer", "lower num_labeled, or give prompts in unlabeled_file")
            if t_tok is not None and cfg.strategy != "finetune":
                if M.same_tokenizer(s_tok, t_tok):
                    check_same_rendering(self.data.train, s_tok, t_tok, self.form, self.columns)
                elif not cfg.sequence_kd:  # across tokenizers the teacher's answers are learnt as text
                    raise DistilTuneError("teacher and student have different tokenizers, so their next-token "
                                          "distributions are over different vocabularies and token-level KD is not "
                                          "defined", "give a student of the teacher's tokenizer family (or student: "
                                          "from_teacher); across tokenizers, set sequence_kd: true (the student "
                                          "learns the teacher's generated answers)")

    def check_terms(self, objective, problems) -> None:
        """Language models are compared on next-token logits; feature terms are for encoders here."""
        from ..losses.logits import _LogitTerm
        from ..losses.objective import _terms

        for term in _terms(objective):
            if term.needs_teacher and not isinstance(term, _LogitTerm):
                problems.found.append(DistilTuneError(
                    f"loss term '{term.name}' is not available for causal_lm (feature and attention terms would read "
                    "the whole sequence, prompt included)", "use kd, reverse_kl, js, gjsd or tv (token level)"))

    def fine_tunes_teacher(self) -> bool:
        # a language model's head is always trained: 'auto' keeps the teacher as it is; 'yes' is SFT
        return bool(self.cfg.teacher) and self.cfg.finetune_teacher == "yes"

    def _fine_tuned(self, role: str, name: str) -> bool:
        return self.cfg.strategy == "finetune" if role == "student" else self.cfg.finetune_teacher == "yes"

    # ---- models ----
    def load(self, name: str, role: str) -> Loaded:
        model = self.auto_class().from_pretrained(M.resolve_path(name))
        return Loaded(model, lm_tokenizer(name), True)

    def load_trained(self, path: str, role: str):
        return self.auto_class().from_pretrained(path)

    def check_pair(self, teacher, student) -> None:
        """Output layers may differ in size (padding rows); both must cover the tokenizer."""

    def max_length(self, tokenizer) -> int:
        return self.cfg.max_length  # a decoder's model_max_length is often a placeholder (1e30) or far above

    # ---- rows ----
    def tokenize(self, rows, tokenizer, length: int, prefix: str):
        return encode_lm(rows, tokenizer, self.form, self.columns, length, prefix)

    def collator(self, tokenizer, teacher_tokenizer=None):
        return LMCollator(tokenizer, pad_to_multiple_of=pad_multiple(self.cfg))

    def batcher(self, tokenizer, teacher_tokenizer=None, exact: bool = False):
        return LMCollator(tokenizer, pad_to_multiple_of=None if exact else pad_multiple(self.cfg))

    def same_inputs(self, student_tokenizer, teacher_tokenizer) -> bool:
        return M.same_tokenizer(student_tokenizer, teacher_tokenizer)  # differ only under sequence_kd (checked)

    def _one_tokenizer(self) -> bool:
        cfg = self.cfg
        return cfg.student == "from_teacher" or M.same_tokenizer(lm_tokenizer(cfg.student), lm_tokenizer(cfg.teacher))

    def teacher_inputs(self, rows, tokenizer, teacher_tokenizer, same: bool):
        return rows, ""  # token-level terms need one tokenizer (checked): the teacher reads the student's ids

    def with_teacher_answers(self, teacher, tokenizer, rows, root: str, teacher_fp: str):
        from .lm_sequence_kd import with_teacher_answers

        return with_teacher_answers(self.cfg, teacher, tokenizer, rows, self.form, self.columns, root, teacher_fp)

    # ---- teacher outputs: per response token, the top-k form and draws from the tail ----
    def cache_form(self) -> dict:
        return {"tail_samples": self.tail_samples, "values": "logprob-fp16"}

    def teacher_outputs(self, teacher, rows, batcher, prefix: str = ""):
        cfg = self.cfg
        return teacher_token_forms(teacher, rows, batcher, cfg.device, cfg.bf16, self._student_vocab(), self.topk,
                                   self.tail_samples)

    def _student_vocab(self) -> int | None:
        """The student's output rows, over which the teacher's top-k is taken (padded vocabularies)."""
        from transformers import AutoConfig

        name = self.cfg.student if self.cfg.student != "from_teacher" else self.cfg.teacher
        try:
            conf = AutoConfig.from_pretrained(M.resolve_path(name))
        except Exception:  # checked before the run began: the model loaded, so this is not expected
            return None
        return getattr(conf.get_text_config(), "vocab_size", None)

    # ---- predict and score ----
    def predict(self, model, rows, batcher, desc: str = "predicting", bf16: bool = False) -> np.ndarray:
        """(rows, length, 2): per token, log p(gold token) and whether it is the top-1 token (0 elsewhere)."""
        device = next(model.parameters()).device
        model.eval()
        n = max(rows["length"], default=0)
        out = np.zeros((len(rows), n, 2), dtype=np.float32)
        order = np.argsort(-np.asarray(rows["length"]), kind="stable")
        table = rows.select_columns(["input_ids", "attention_mask", "labels"])[:]
        with torch.inference_mode():
            for a in range(0, len(order), 8):
                idx = order[a:a + 8]
                batch = batcher([{k: table[k][i] for k in table} for i in idx])
                with _autocast(bf16, device):
                    logits = model(input_ids=batch["input_ids"].to(device),
                                   attention_mask=batch["attention_mask"].to(device)).logits
                scores = token_scores(logits, batch["labels"].to(device)).float().cpu().numpy()
                out[idx, :scores.shape[1]] = scores
        return out

    def teacher_agreement(self, teacher, model, rows, batcher, bf16: bool = False) -> dict | None:
        """On the gold response tokens of the test rows: the mean KL(teacher || model) of the next-token
        distributions (T = 1) and how often their top-1 tokens agree (one tokenizer: sequence-level KD
        across tokenizers has no token-level closeness)."""
        if self.cfg.teacher and not self._one_tokenizer():
            return None
        return agreement_on_rows(teacher, model, rows, batcher, bf16)

    def generation_speeds(self, models: dict, rows) -> dict:
        """Greedy generation with the KV cache on the first 8 test prompts, each model reading them as it
        renders them, side by side (fp32, CPU as the other speeds): prefill ms and decode tokens/s."""
        from .lm_generations import prompts_and_golds

        rows = rows.select(range(min(8, len(rows))))
        return generation_speed({n: (m, prompts_and_golds(rows, self.form, self.columns, tok)[0], tok.pad_token_id)
                                 for n, (m, tok) in models.items()}, rounds=min(3, self.cfg.latency_samples))

    def generations(self, models: dict, rows) -> dict | None:
        from .lm_generations import answer_generations

        cfg = self.cfg
        return answer_generations(models, rows, self.form, self.columns, cfg.answer_checker, cfg.generation_samples,
                                  cfg.generation_max_new_tokens, bf16=cfg.bf16, progress=not cfg.disable_tqdm)

    def labels(self, rows) -> np.ndarray:
        n = max(rows["length"], default=0)
        out = np.full((len(rows), n), -100, dtype=np.int64)
        for i, lab in enumerate(rows["labels"]):
            out[i, :len(lab)] = lab
        return out

    def metrics(self, predictions, labels) -> dict[str, float]:
        keep = np.asarray(labels) != -100
        p = np.asarray(predictions)
        tokens = int(keep.sum())
        nll = float(-p[..., 0][keep].sum() / max(tokens, 1))
        return {"token_accuracy": float(p[..., 1][keep].sum() / max(tokens, 1)), "nll": nll,
                "perplexity": float(np.exp(min(nll, 50.0))), "tokens": tokens}

    def preprocess_logits(self, logits, labels):
        """Validation: a batch's logits reduced to per-token scores before the Trainer gathers them."""
        return token_scores(logits, labels)

    def compute_metrics(self, pred) -> dict:
        return self.metrics(np.asarray(pred.predictions), np.asarray(pred.label_ids))

    def agreement(self, reference, predictions, labels) -> dict:
        raise DistilTuneError("causal LMs are not exported to ONNX here", "use the saved model folder")

    def export_plan(self, model, tokenizer, test, batcher, source: str) -> dict:
        raise DistilTuneError("ONNX export of causal LMs is not built: the saved model folder loads with "
                              "transformers.pipeline('text-generation')", "remove export")


__all__ = ["CausalLM", "LMCollator", "form_columns"]
