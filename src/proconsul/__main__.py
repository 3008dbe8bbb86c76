"""`python -m proconsul` runs the CLI."""

from proconsul.cli.main import main

raise SystemExit(main())
