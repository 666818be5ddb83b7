"""A language model's greedy generations in report.md: answer accuracy, and a few test prompts with
each model's answer beside the gold one (newlines shown as ' ⏎ ' so that one answer stays one line)."""
from __future__ import annotations

LONGEST = 600  # characters of a prompt or an answer shown; report.json keeps them whole


def _line(text: str) -> str:
    text = " ⏎ ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())
    return text if len(text) <= LONGEST else text[:LONGEST] + " …"


def generation_lines(report: dict) -> list[str]:
    found = report.get("generations")
    if not found:
        return []
    lines = []
    scored = {n: r["metrics"]["answer_accuracy"] for n, r in report["models"].items()
              if r.get("metrics", {}).get("answer_accuracy") is not None}
    if scored:
        lines += [f"- answer accuracy of greedy generations ({found['rows']} test prompts, final answers read by "
                  f"'{found['checker']}', at most {found['max_new_tokens']} new tokens): "
                  + ", ".join(f"{n} {a:.2%}" for n, a in scored.items())]
    if found.get("examples"):
        lines += ["", "## Generations side by side", "",
                  f"Greedy, at most {found['max_new_tokens']} new tokens, on the first test prompts."]
        for i, ex in enumerate(found["examples"], 1):
            lines += ["", f"### Test prompt {i}", "", f"- prompt: {_line(ex['prompt'])}", f"- gold: {_line(ex['gold'])}"]
            lines += [f"- {name}: {_line(text)}" for name, text in ex.items() if name not in ("prompt", "gold")]
    return lines + [""] if lines else []
