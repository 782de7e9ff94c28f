"""lumigrad._runtime.tasks.run_tasks: order of results, threads, grad mode, nesting, errors."""
import threading
import time

import pytest
import torch

from lumigrad._runtime import tasks as T


def test_results_come_back_in_order_from_more_than_one_thread(monkeypatch):
    monkeypatch.setenv("LUMIGRAD_NUM_THREADS", "2")
    started, names = threading.Barrier(2, timeout=10), []

    def task(i):
        if i < 2:  # both threads must be inside at once, or the barrier times out
            started.wait()
        names.append(threading.current_thread().name)
        return i * i

    assert T.run_tasks([lambda i=i: task(i) for i in range(6)]) == [i * i for i in range(6)]
    assert len(set(names)) == 2


def test_tasks_run_in_the_callers_grad_mode(monkeypatch):
    monkeypatch.setenv("LUMIGRAD_NUM_THREADS", "2")
    x = torch.ones(3, requires_grad=True)
    with torch.no_grad():
        out = T.run_tasks([lambda: (x * 2).requires_grad for _ in range(4)])
    assert out == [False] * 4
    out = T.run_tasks([lambda: x * 2 for _ in range(4)])
    sum(o.sum() for o in out).backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 8.0))


def test_nested_calls_run_in_order_on_the_task_thread(monkeypatch):
    monkeypatch.setenv("LUMIGRAD_NUM_THREADS", "2")

    def outer(i):
        me = threading.current_thread()
        inner = T.run_tasks([lambda j=j: (j, threading.current_thread() is me, T.in_task()) for j in range(3)])
        return i, inner

    out = T.run_tasks([lambda i=i: outer(i) for i in range(4)])
    assert [o[0] for o in out] == list(range(4))
    assert all(inner == [(j, True, True) for j in range(3)] for _, inner in out)
    assert not T.in_task()


def test_a_failing_task_raises_in_the_caller_after_the_others_stopped(monkeypatch):
    monkeypatch.setenv("LUMIGRAD_NUM_THREADS", "2")
    done = []

    def task(i):
        if i == 3:
            raise ValueError("task 3 failed")
        done.append(i)

    with pytest.raises(ValueError, match="task 3 failed"):
        T.run_tasks([lambda i=i: task(i) for i in range(8)])
    n = len(done)
    time.sleep(0.05)
    assert 1 <= n == len(done) <= 7  # every task had stopped: none appends later
    assert not T.in_task()


def test_one_thread_runs_the_tasks_on_the_caller(monkeypatch):
    monkeypatch.setenv("LUMIGRAD_NUM_THREADS", "1")
    me = threading.current_thread()
    assert T.run_tasks([lambda: threading.current_thread() is me] * 3) == [True] * 3
