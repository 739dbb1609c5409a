"""Explanations shown: tokens coloured by score for the terminal (rich) and as a self-contained
HTML page (no scripts, styles or fonts from the network)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from rich.text import Text

from textlstm.explain.attributions import Explanation

POSITIVE = (22, 150, 60)  # green: pushes towards the explained label
NEGATIVE = (200, 40, 40)  # red: pushes away from it


def _scale(explanation: Explanation) -> float:
    return max((abs(s) for s in explanation.scores), default=0.0) or 1.0


def _shade(score: float, scale: float) -> tuple[int, int, int]:
    """The colour's blend with white, by |score| / scale."""
    base = POSITIVE if score >= 0 else NEGATIVE
    weight = min(1.0, abs(score) / scale)
    return tuple(round(255 + (c - 255) * weight) for c in base)  # type: ignore[return-value]


def summary(explanation: Explanation) -> str:
    e = explanation
    return (
        f"predicted {e.predicted}; explaining {e.label} (probability {e.probability:.3f}): "
        f"logit {e.logit:+.3f} = baseline {e.baseline_logit:+.3f} + token scores "
        f"{sum(e.scores):+.3f} (completeness error {e.delta:+.4f})"
    )


def coloured(explanation: Explanation) -> Text:
    """The tokens on backgrounds from red (against the label) to green (for it)."""
    scale = _scale(explanation)
    text = Text()
    for i, (token, score) in enumerate(zip(explanation.tokens, explanation.scores)):
        r, g, b = _shade(score, scale)
        if i:
            text.append(" ")
        text.append(token, style=f"black on rgb({r},{g},{b})")
    return text


def to_html(explanations: Sequence[Explanation], title: str) -> str:
    """One page: per text, the summary line, the coloured tokens (each token's score on hover)
    and, for attention pooling, the attention weights."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.9}"
        "span.t{padding:0.1em 0.2em;border-radius:0.2em}"
        "p.s{color:#444;font-size:0.9em}p.n{color:#777;font-size:0.85em}"
        "section{border-bottom:1px solid #ddd;padding-bottom:1em}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Green tokens push the model towards the explained label, red ones away from it; "
        "the stronger the colour, the larger the share (integrated gradients on the "
        "embeddings). Hover over a token for its score.</p>",
    ]
    for e in explanations:
        scale = _scale(e)
        spans = []
        for token, score in zip(e.tokens, e.scores):
            r, g, b = _shade(score, scale)
            spans.append(
                f'<span class="t" style="background:rgb({r},{g},{b})" '
                f'title="{score:+.4f}">{html.escape(token)}</span>'
            )
        parts += [
            "<section>",
            f'<p class="s">{html.escape(summary(e))}</p>',
            f"<p>{' '.join(spans)}</p>",
        ]
        if e.attention is not None:
            top = sorted(zip(e.attention, e.tokens), reverse=True)[:10]
            shown = ", ".join(f"{html.escape(t)} {w:.3f}" for w, t in top)
            parts.append(f'<p class="n">attention weights, largest: {shown}</p>')
        if e.parts:
            parts.append(f'<p class="n">{html.escape(parts_note(e))}</p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def parts_note(explanation: Explanation) -> str:
    shown = ", ".join(f"{name} {value:+.3f}" for name, value in explanation.parts.items())
    return f"the token scores by part of the model: {shown}"
