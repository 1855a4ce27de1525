"""`python -m api.cli ...`: the same command as `conductor ...`."""

from api.cli.main import main

raise SystemExit(main())
