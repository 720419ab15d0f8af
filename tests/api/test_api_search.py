"""Full-text search and names over the REST API (the same engine as the CLI and window)."""

from __future__ import annotations

from typing import Any

from app.core.models import ValueDataPoint
from app.service import BenchService


def test_text_search_in_a_query_and_bad_text_is_a_4xx(service: BenchService, http: Any) -> None:
    found = service.submit(ValueDataPoint(value={"note": "cloudy buffer"}, label="a",
                                          ownership_info=service.ownership(experiment="EXP42")))
    service.submit(ValueDataPoint(value=1, label="b"))
    answer = http.post("/datapoints/query", json={"$text": {"$search": "exp42 cloud"}})
    assert answer.status_code == 200, answer.text
    assert list(answer.json()) == [found.datapoint_id]
    for body in ({"$text": {"$search": '"NEAR(x AND'}}, {"$text": "cloudy"},
                 {"$text": {"$search": "x" * 5000}},
                 {"$text": {"$search": "a", "$caseSensitive": True}},
                 {"$or": [{"$text": {"$search": "a"}}, {"label": "b"}]}):
        answer = http.post("/datapoints/query", json=body)
        assert 400 <= answer.status_code < 500 or (
            answer.status_code == 200 and answer.json() == {}), (body, answer.text)


def test_a_move_is_seen_by_rest_queries(service: BenchService, http: Any) -> None:
    captured = service.submit(ValueDataPoint(value=1, ownership_info=service.ownership(
        experiment="EXP42")))
    service.update(captured.datapoint_id, ownership={"experiment": "EXP43"})
    answer = http.post("/datapoints/query", json={"ownership_info.experiment_id": "EXP43"})
    assert list(answer.json()) == [captured.datapoint_id]
    assert http.post("/datapoints/query",
                     json={"ownership_info.experiment_id": "EXP42"}).json() == {}
    document = http.get(f"/datapoint/{captured.datapoint_id}").json()
    assert document["custom_metadata"]["experiment_name"] == "EXP43"
