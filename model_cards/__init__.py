"""Model cards rendered from Jinja templates (`model_cards/templates/`), never from strings in modeling code.

    from infimed.model_cards import write_model_card
    write_model_card("runs/demo/grpo", eval_results="runs/demo/eval/results.json", recipe="recipes/demo.yaml")
"""

from .model_card import REQUIRED_SECTIONS, render_model_card, validate_model_card, write_model_card

__all__ = ["REQUIRED_SECTIONS", "render_model_card", "validate_model_card", "write_model_card"]
