"""A served API freezes what it started with and collects its youngest objects less often;
the tests' apps (TUNE_GARBAGE_COLLECTOR off) leave the collector as Python set it."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from app.core.config import Settings
from app.core.garbage_collection import YOUNGEST_GENERATION_THRESHOLD
from app.main import create_app


class _Node:
    next: "_Node | None" = None


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
async def test_a_started_api_freezes_its_start_up_objects(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"TUNE_GARBAGE_COLLECTOR": True}))
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNGEST_GENERATION_THRESHOLD, *before[1:])
        # Still collecting: a cycle made after the start is freed.
        cycle = _Node()
        cycle.next = cycle
        watched = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert watched() is None


@pytest.mark.usefixtures("restored_collector")
async def test_the_tests_apps_leave_the_collector_alone(settings: Settings) -> None:
    assert settings.TUNE_GARBAGE_COLLECTOR is False
    app = create_app(settings)
    before = gc.get_threshold()
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == before
