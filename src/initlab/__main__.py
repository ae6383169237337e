"""``python -m initlab`` is the ``initlab`` command."""

from initlab.cli import main

raise SystemExit(main())
