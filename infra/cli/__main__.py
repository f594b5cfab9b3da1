"""`python -m infra.cli`: the same as the `batch-canceller` console script."""

from infra.cli.main import main

raise SystemExit(main())
