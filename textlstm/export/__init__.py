"""Export: a run folder as an ONNX model with its text-to-ids files (``onnx``), runnable by
onnxruntime alone (``standalone``, copied into each export as ``predict.py``) or by
``textlstm predict`` (``engine``)."""
