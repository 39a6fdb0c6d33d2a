"""Subcommands of the ``infimed`` console script, one module each (see ``infimed.cli``)."""
