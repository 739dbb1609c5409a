"""Explanations: which tokens drove a model's decision (integrated gradients through Captum, and
attention weights), as terminal text, JSON or a self-contained HTML page."""

from textlstm.explain.attributions import DEFAULT_STEPS, Explainer, Explanation

__all__ = ["DEFAULT_STEPS", "Explainer", "Explanation"]
