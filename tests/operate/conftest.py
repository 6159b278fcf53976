"""The operator commands' tests reuse the end-to-end fixtures: the dev server, the demo service, worker.py."""

from tests.e2e.conftest import cli, worker  # noqa: F401
