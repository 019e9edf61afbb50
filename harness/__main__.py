"""`python -m harness` runs the archscale CLI."""

from harness.cli import main

raise SystemExit(main())
