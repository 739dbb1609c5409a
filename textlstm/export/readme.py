"""The README.md of an export folder: what is in it and how to run it without textlstm."""

from __future__ import annotations

from typing import Any

NEEDS = {
    "bpe": " tokenizers",
    "wordpiece": " tokenizers",
    "unigram": " tokenizers",
    "spacy": " spacy",
}
SUBWORD = ("bpe", "wordpiece", "unigram")


def jieba_pin() -> str:
    """``jieba==<the version that made the vocabulary>``: another version's dictionary may cut
    the same text into other words."""
    from importlib.metadata import version

    return f" 'jieba=={version('jieba')}'"


def text(loaded: Any, about: dict[str, Any]) -> str:
    kind = loaded.recipe.tokenizer.kind
    packages = "onnxruntime numpy" + (jieba_pin() if kind == "jieba" else NEEDS.get(kind, ""))
    labels = ", ".join(f"`{label}`" for label in loaded.labels)
    precision = "int8 weights (onnxruntime dynamic quantization)" if about["quantize"] else "fp32"
    return f"""# {loaded.recipe.name}: an exported textlstm model

A text classifier ({labels}) exported by textlstm {about["textlstm"]} from the run
`{about["run"]}`, in {precision}. It runs with onnxruntime alone: no textlstm, no torch.

## Use it

```bash
python -m venv venv && venv/bin/pip install {packages}
printf '%s\\n' "first text to classify" "second text" > texts.txt
venv/bin/python predict.py texts.txt          # one JSON line per text: label, score, scores
venv/bin/python predict.py - --top-k 1 < texts.txt
```

From Python, with this folder on `sys.path`:

```python
from predict import Model

model = Model("{"."}")  # the export folder
print(model.predict(["first text to classify"]))
probabilities = model.probabilities(["first text", "second text"])  # numpy (texts, labels)
```

## The files

- `model.onnx`: the classifier (ONNX opset {about["opset"]}). Inputs `tokens`, int64 (batch,
  steps): each text's token ids followed by 0 (padding), at least {about["min_steps"]} steps
  (pad shorter batches); `lengths`, int64 (batch,): each text's number of ids. Outputs `logits`
  and `probabilities`, float32 (batch, labels), the labels in the order of `labels.json`.
- `preprocess.json`: how text becomes tokens (tokenizer `{kind}`, its settings and the exact
  rules), `vocab.json`: tokens by id (`<pad>` 0, `<unk>` 1 for unknown tokens; a text with no
  tokens is one `<unk>`){", `tokenizer.json`: the subword tokenizer" if kind in SUBWORD else ""}.
- `predict.py`: the reference implementation of the above, and a command line.
- `labels.json`, `recipe.toml` (the recipe the model was trained with), `export.json` (this
  export: inputs, outputs, versions and the parity measured when it was written: the largest
  difference of any probability against PyTorch, {about["parity"]:.1e}).
"""
