"""Run a script in a fresh interpreter where `import infimed` fails, so only a checkpoint's copied code can be used."""

import textwrap

# Prepended to such scripts: a meta-path finder that refuses `infimed` and its subpackages.
BLOCK_INFIMED = textwrap.dedent(
    """
    import sys
    class _BlockInfiMed:
        def find_spec(self, name, path=None, target=None):
            if name == "infimed" or name.startswith("infimed."):
                raise ImportError("infimed is blocked in this process")
    sys.meta_path.insert(0, _BlockInfiMed())
    """
)
