"""Inference: a run folder (``predictor``) or an ONNX export (``exported``) as a predictor, the
precision a prediction runs in (``precision``), and texts streamed from and to files
(``files``)."""
