"""`python -m harness` runs the archscale CLI."""

from harness.cli.main import main

raise SystemExit(main())
