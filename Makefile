.PHONY: help run test unit lint type fmt check bench
help:  ## this list
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'
run:  ## start the API on SQLite (scripts/run)
	scripts/run
test:  ## the whole suite, with a throwaway PostgreSQL (scripts/test)
	scripts/test
unit:  ## unit tests only (no database server)
	.venv/bin/python -m pytest tests/unit -q
fmt:  ## format
	.venv/bin/ruff format domain application projections adapters api tests
lint:  ## ruff
	.venv/bin/ruff check domain application projections adapters api
type:  ## mypy --strict
	.venv/bin/mypy
check: lint type test  ## everything CI checks, and more
bench:  ## the core benchmark (prints the README table)
	.venv/bin/python scripts/bench_core
