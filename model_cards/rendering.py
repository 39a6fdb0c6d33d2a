"""The Jinja environment every card template in `model_cards/templates/` is rendered with.

`StrictUndefined` turns a misspelt or missing field into an error instead of a silently empty section.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TEMPLATES_DIR", "render_template"]

TEMPLATES_DIR = Path(__file__).parent / "templates"


def _percent(value) -> str:
    """Fractions in [0, 1] print as percentages with one decimal (the evaluation contract); counts print as-is."""
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return f"{100 * value:.1f}%"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_template(name: str, **context) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    env.filters["percent"] = _percent
    return env.get_template(name).render(**context)
