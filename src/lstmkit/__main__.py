"""``python -m lstmkit``: the same command line as the ``lstmkit`` script."""

from .cli import main

raise SystemExit(main())
