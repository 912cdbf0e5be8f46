"""Subcommands of the ``mobilenets`` command line, one module per workflow step."""
