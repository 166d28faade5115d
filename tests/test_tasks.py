"""A bug in a background task is reported by name, exception and place, never as an
anonymous ExceptionGroup (issue 18)."""

from __future__ import annotations

import asyncio

import pytest

from rpa.errors import RunCrashed
from rpa.run.tasks import describe_crash, named


async def _broken() -> None:
    table: dict[str, int] = {}
    table["missing"]  # a bug: a KeyError in rpa's own code


def test_a_failing_task_in_a_task_group_is_named_with_its_exception_and_place() -> None:
    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(named("heartbeat", _broken()))
            tg.create_task(asyncio.sleep(10))

    with pytest.raises(ExceptionGroup) as caught:
        asyncio.run(main())
    said = describe_crash(caught.value)
    assert said.startswith("the heartbeat task failed: KeyError: 'missing' (")
    assert "test_tasks.py:16)" in said  # the line of the bug, not of the task wrapper
    assert "ExceptionGroup" not in said and "TaskGroup" not in said


def test_conditions_pass_through_as_they_are_and_groups_say_each_leaf_once() -> None:
    async def stopped() -> None:
        raise RunCrashed("the queue database stayed away past --db-wait")

    with pytest.raises(RunCrashed):
        asyncio.run(named("feeder", stopped()))
    group = ExceptionGroup("x", [RunCrashed("a"), RunCrashed("a"), ValueError("b")])
    assert describe_crash(group) == "a; ValueError: b"  # raised nowhere: no place to say
