"""``python -m vaekit`` (and ``torchrun -m vaekit``) runs the CLI."""

from vaekit.cli import main

raise SystemExit(main())
