"""config/heap.py: a serving process freezes its start-up objects and collects the young less often."""

from __future__ import annotations

import gc

import pytest

from config import heap


@pytest.fixture
def restored_collector():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_what_start_up_made_and_raises_the_young_threshold(restored_collector, caplog):
    gc.unfreeze()
    assert gc.get_freeze_count() == 0

    with caplog.at_level("INFO", logger="config.heap"):
        heap.settle()

    # Django, DRF and the contexts are loaded here: tens of thousands of objects, none garbage
    frozen = gc.get_freeze_count()
    assert frozen > 10_000
    assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD
    # a full collection no longer walks them: it finds only what was made since
    assert sum(len(gc.get_objects(generation)) for generation in range(3)) < frozen
    [record] = [r for r in caplog.records if r.getMessage() == "garbage collector settled"]
    assert record.frozen_objects > 10_000


def test_the_web_workers_settle_once_the_application_is_loaded(restored_collector):
    import runpy
    from pathlib import Path

    hooks = runpy.run_path(str(Path(__file__).resolve().parents[1] / "config" / "gunicorn.conf.py"))
    gc.unfreeze()

    hooks["post_worker_init"](worker=None)

    assert gc.get_freeze_count() > 10_000
