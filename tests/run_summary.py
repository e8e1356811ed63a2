"""Lines a test adds to the end of the run's output (`run_summary` fixture): counts that say
how much a sweep or a fuzz run covered. Registered in tests/conftest.py."""

from collections.abc import Iterator

import pytest

RUN_SUMMARY_KEY = pytest.StashKey[dict[str, str]]()


@pytest.fixture(scope="session")
def run_summary(pytestconfig: pytest.Config) -> Iterator[dict[str, str]]:
    """Topic -> line; a later line of a topic replaces the earlier one."""
    yield pytestconfig.stash.setdefault(RUN_SUMMARY_KEY, {})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for topic, line in sorted(terminalreporter.config.stash.get(RUN_SUMMARY_KEY, {}).items()):
        terminalreporter.write_line(f"{topic}: {line}")
