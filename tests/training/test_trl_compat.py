"""TRL internals InfiMed's trainers rely on (`infimed.training.trl_compat`): these fail loudly when TRL changes them."""

import ast
import inspect
import textwrap

import pytest
from trl import GRPOTrainer, SFTTrainer

from infimed.training.trl_compat import GENERATE_OUTPUT_FIELDS, hidden_from_trl_init, with_empty_image_lists


def _source(function) -> str:
    return textwrap.dedent(inspect.getsource(function))


def test_sft_trainer_still_refuses_vision_packing_in_its_constructor_only():
    # InfiMedSFTTrainer hides `packing` from exactly this check; if TRL moved it (or learned to pack images), the
    # workaround must be revisited.
    source = _source(SFTTrainer.__init__)
    assert "if self._is_vision_dataset and args.packing:" in source
    assert "Packing is not supported for vision datasets" in source


def test_grpo_trainer_still_reloads_its_reference_from_the_config_path_when_beta_is_set():
    # InfiMedGRPOTrainer hides `beta`/`sync_ref_model` so TRL skips this reload, then sets its in-memory reference.
    source = _source(GRPOTrainer.__init__)
    assert "self.beta = args.beta" in source
    assert "create_model_from_path(get_config_model_id(self.model.config)" in source
    assert "if args.sync_ref_model:" in source


def test_grpo_generate_still_returns_the_fields_infimed_reads_by_name():
    tree = ast.parse(_source(GRPOTrainer._generate))
    returns = [node for node in ast.walk(tree) if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple)]
    assert returns, "GRPOTrainer._generate no longer returns a tuple"
    names = tuple(element.id for element in returns[-1].value.elts)
    assert names == GENERATE_OUTPUT_FIELDS


def test_with_empty_image_lists_replaces_only_text_only_images():
    outputs = tuple(range(len(GENERATE_OUTPUT_FIELDS)))
    index = GENERATE_OUTPUT_FIELDS.index("images")
    mixed = (*outputs[:index], [None, ["img"]], *outputs[index + 1:])
    assert with_empty_image_lists(mixed)[index] == [[], ["img"]]
    text_only = (*outputs[:index], [None, None], *outputs[index + 1:])
    assert with_empty_image_lists(text_only) == text_only
    with pytest.raises(RuntimeError, match="GENERATE_OUTPUT_FIELDS"):
        with_empty_image_lists(outputs[:-1])


def test_hidden_from_trl_init_restores_the_fields():
    class Args:
        packing, beta = True, 0.04

    args = Args()
    with pytest.raises(KeyError), hidden_from_trl_init(args, packing=False, beta=0.0):
        assert (args.packing, args.beta) == (False, 0.0)
        raise KeyError("the constructor fails")
    assert (args.packing, args.beta) == (True, 0.04)
