"""Fixtures of the analyze-step tests: the fake model endpoint, its key file, and a worker environment using both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.analysis.fake_llm import FakeLLM, running_fake_llm

# The end-to-end tests' fixture: starter.py/worker.py against the dev server, with one environment.
from tests.e2e.conftest import cli  # noqa: F401

# Reuse the workflow tests' guard: no run outlives its test (a leftover stalls the time-skipping server).
from tests.workflows.conftest import no_leftover_workflows  # noqa: F401

LLM_KEY = "sk-test-llm-key-7b2e41"  # distinctive enough to grep for in histories
LLM_MODEL = "fake-model-from-env"


@pytest.fixture(scope="session")
async def _llm_server() -> AsyncIterator[FakeLLM]:
    async with running_fake_llm() as fake:
        yield fake


@pytest.fixture
def llm(_llm_server: FakeLLM) -> FakeLLM:
    """The fake OpenAI-compatible endpoint, with an empty script and no recorded requests."""
    _llm_server.reset()
    return _llm_server


@pytest.fixture
def llm_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "llm-key"
    path.write_text(LLM_KEY + "\n")
    return path


@pytest.fixture
def llm_environ(worker_environ: dict[str, str], llm: FakeLLM, llm_key_file: Path) -> dict[str, str]:
    """The worker's environment: the demo credential plus the model endpoint, model and key file."""
    return {
        **worker_environ,
        "LLM_BASE_URL": llm.base_url,
        "LLM_MODEL": LLM_MODEL,
        "LLM_API_KEY_FILE": str(llm_key_file),
    }
