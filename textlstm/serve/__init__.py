"""Serving: a run folder or an ONNX export behind an HTTP JSON API (``app``) whose concurrent
requests share forward passes (``batcher``)."""
