"""``python -m mobilenets``: the command line, as the ``mobilenets`` script runs it."""

from .cli import main

raise SystemExit(main())
