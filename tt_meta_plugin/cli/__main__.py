"""`python -m tt_meta_plugin.cli`: the `tt-meta` command."""

from . import main

raise SystemExit(main())
