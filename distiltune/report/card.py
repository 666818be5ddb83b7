"""The model card (README.md) every saved model folder carries."""
from __future__ import annotations


def model_card(name: str, how: str, cfg, data, pipeline_tag: str = "text-classification") -> str:
    labels = (", ".join(data.label_names) if data.label_names else
              "answer spans of the context" if data.task_type == "question_answering" else
              "responses, learnt token by token" if data.task_type == "causal_lm" else "regression")
    use = (f"```python\nfrom transformers import pipeline\nclf = pipeline('{pipeline_tag}', model='<this folder>')\n```\n"
           if pipeline_tag else "")
    if pipeline_tag == "question-answering":  # transformers 5 removed that pipeline; the auto class loads the folder
        use = ("```python\nfrom transformers import AutoModelForQuestionAnswering, AutoTokenizer\n"
               "model = AutoModelForQuestionAnswering.from_pretrained('<this folder>')\n"
               "tok = AutoTokenizer.from_pretrained('<this folder>')\n"
               "out = model(**tok(question, context, return_tensors='pt'))  # start_logits, end_logits per token\n```\n"
               "`distiltune export --model <this folder>` writes an ONNX folder whose `predict.py` answers "
               "(question TAB context), windows and best span included.\n")
    columns = f"- Text columns: {', '.join(data.text_columns)}; max length {cfg.max_length} tokens.\n" if pipeline_tag else \
        f"- Input column: {', '.join(data.text_columns)}.\n"
    return ("---\nlibrary_name: transformers\n" + (f"pipeline_tag: {pipeline_tag}\n" if pipeline_tag else "")
            + "tags: [distiltune]\n---\n"
            f"# {name}\n\nMade by distiltune (strategy `{cfg.strategy}`).\n\n"
            f"- How: {how}.\n- Task: {data.task_type} ({labels}); main metric {data.metric}.\n" + columns +
            f"- Seed {cfg.seed}. The full resolved configuration is `distiltune_config.yaml` in this folder.\n\n" + use)
