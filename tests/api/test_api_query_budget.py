"""No query stalls capture or ``/health``; a query over budget is answered, not hung.

Issue #14, defect 3: ``{"label": {"$regex": "^(a+)+$"}}`` against a 33-character label
froze the whole service — captures and ``/health`` timed out — because Python's ``re``
backtracked inside SQLite holding the GIL. The stall test runs ``benchdata run`` in its own
process, as a bench does, so a frozen server shows up as the client's timeout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.server import ApiServer
from app.core import query as querylang
from app.core.models import ValueDataPoint
from app.service import BenchService
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
EVIL_LABEL = "a" * 32 + "b"
EVIL_SELECTOR = {"label": {"$regex": "^(a+)+$"}}
#: How long a capture or a health check may take while the queries run: a liveness
#: bound (the campaign saw timeouts at 10 s), not a speed target.
ANSWER_BOUND_S = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def benchdata_run(home: Path) -> Iterator[str]:
    """``benchdata run`` serving the API of the bench in ``home``; yields its base URL."""
    port = _free_port()
    env = {**os.environ, "BENCHDATA_HOME": str(home), "BENCHDATA_API_PORT": str(port),
           "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "run", "--no-watch",
         "--no-sync", "--log-level", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    try:
        with httpx.Client(base_url=url, timeout=5) as client:
            def answering() -> bool:
                assert process.poll() is None, process.communicate()
                try:
                    return client.get("health").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(answering, timeout=60, what="benchdata run to serve the API")
        yield url
    finally:
        process.kill()  # a frozen server would not stop on SIGINT
        process.communicate()


def test_a_catastrophic_regex_stalls_neither_capture_nor_health(tmp_path: Path) -> None:
    with BenchService(tmp_path / "home" / "data") as bench:
        bench.submit_many([ValueDataPoint(label=EVIL_LABEL, value=i) for i in range(200)])
        wanted = bench.submit(ValueDataPoint(label="aaaa", value=0)).datapoint_id
    sent, answers, done = [0], [], threading.Event()
    with benchdata_run(tmp_path / "home") as url:
        def query_until_done() -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                while not done.is_set():
                    sent[0] += 1
                    try:
                        answers.append(client.post("datapoints/query", json=EVIL_SELECTOR))
                    except httpx.TransportError as exc:
                        answers.append(exc)

        querier = threading.Thread(target=query_until_done, daemon=True)
        querier.start()
        try:
            wait_until(lambda: sent[0] > 0, timeout=20, what="the first query to be sent")
            with httpx.Client(base_url=url, timeout=ANSWER_BOUND_S) as other:
                for n in range(20):
                    health = other.get("health")
                    assert health.status_code == 200 and health.json()["healthy"], health.text
                    posted = other.post("datapoint", data={"datapoint": json.dumps(
                        {"data_type": "json", "label": f"meanwhile-{n}", "value": n})})
                    assert posted.status_code == 200, posted.text
            wait_until(lambda: len(answers) > 0, timeout=ANSWER_BOUND_S,
                       what="an answer to the regex query")
        finally:
            done.set()
            querier.join(60)
        assert not querier.is_alive()
    for answer in answers:
        assert isinstance(answer, httpx.Response) and answer.status_code == 200, answer
        assert list(answer.json()) == [wanted]
    with BenchService(tmp_path / "home" / "data") as bench:
        assert bench.count({"label": {"$regex": "^meanwhile-"}}) == 20


REFUSED = [
    # (selector, status, words the sentence must contain)
    ({"label": {"$regex": r"^(a+)+\1$"}}, 400, "uses a backreference"),
    ({"label": {"$regex": "^(?=a)"}}, 400, "uses a lookahead"),
    ({"label": {"$regex": "(?<!a)b"}}, 400, "RE2 syntax"),
    ({"label": {"$regex": "a" * (querylang.MAX_REGEX_CHARS + 1)}}, 400, "characters long"),
    ({"label": {"$in": list(range(querylang.MAX_IN_VALUES + 1))}}, 400, "$in lists"),
    ({"$or": [{"$or": [{"$or": [{"label": "x"}] * 1}] * 1}]}, 200, ""),
]


@pytest.mark.parametrize(("selector", "status", "words"), REFUSED)
def test_queries_over_a_budget_are_refused_with_a_sentence(
        http: httpx.Client, selector: Any, status: int, words: str) -> None:
    answer = http.post("datapoints/query", json=selector)
    assert answer.status_code == status, answer.text
    assert words in answer.text


def test_a_query_over_its_time_budget_answers_408(
        server: ApiServer, http: httpx.Client, service: BenchService) -> None:
    service.submit_many([ValueDataPoint(label=f"label-{i}", value=i) for i in range(3000)])
    service.store.query_seconds = 1e-9  # spent by the first look at the clock
    try:
        answer = http.post("datapoints/query", json={"value": {"$gte": 0}})
        assert answer.status_code == 408, answer.text
        assert answer.json()["detail"].startswith(
            "the query ran longer than its 1e-09-second budget and was stopped")
        # Captures do not run under the query budget: they still go through.
        posted = http.post("datapoint", data={"datapoint": json.dumps(
            {"data_type": "json", "label": "after", "value": 1})})
        assert posted.status_code == 200, posted.text
    finally:
        service.store.query_seconds = querylang.DEFAULT_TIME_BUDGET_SECONDS
    assert http.post("datapoints/query", json={"label": "after"}).json() != {}
    assert http.get("health").json()["healthy"]
