"""``python -m agglo``: the command line."""

from agglo.cli import main

raise SystemExit(main())
