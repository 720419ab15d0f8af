"""schemathesis over every operation of the REST API's own OpenAPI: no input is a 5xx.

A real server (uvicorn on a loopback port, a bench in a temp folder) answers cases that
schemathesis derives from ``/openapi.json``, both ones that fit the schema and ones that do
not. No answer may be a server error (house rule: bad input gets a clear 4xx); schemathesis's
other default checks run too (documented status codes, content types, response schemas,
invalid data refused), except ``positive_data_acceptance``: the schema declares the
``datapoint`` form field as a string and a query body as an object, while the server also
checks that the string is a datapoint's JSON and the object a valid selector, and refuses
the rest with a 400 that says why. That is the documented contract, not a defect.

Bounded and reproducible: a fixed number of examples per operation and mode, derandomized
(hypothesis derives its seed from the test), no example database.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.api.server import ApiServer
from app.service import BenchService

EXAMPLES_PER_OPERATION = 50
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def _seed(service: BenchService, tmp_path: Path) -> None:
    """A few datapoints, so listings, queries and value look-ups have something to serve."""
    for index in range(3):
        service.capture_value({"i": index, "t": 20.5 + index}, label=f"seeded {index}")
    sample = tmp_path / "seeded.csv"
    sample.write_text("a,b\n1,2\n", encoding="utf-8")
    service.capture_file(sample, label="seeded file")


def _operations(schema: Any) -> list[Any]:
    # ``ok()`` raises for an operation schemathesis cannot read: an invalid schema fails.
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_no_generated_request_gets_a_server_error(
        server: ApiServer, service: BenchService, tmp_path: Path, mode: GenerationMode) -> None:
    _seed(service, tmp_path)
    schema = schemathesis.openapi.from_url(f"{server.url}openapi.json")
    operations = _operations(schema)
    labels = sorted(op.label for op in operations)
    assert len(labels) >= 7, labels  # every operation the API documents is exercised
    tried: dict[str, int] = {}
    for operation in operations:
        run_cases = _case_runner(operation, mode, server.url, tried)
        try:
            run_cases()
        except Unsatisfiable:
            # Nothing about it can be invalid (GET /health; a path id is any string).
            assert mode is GenerationMode.NEGATIVE and operation.label not in tried, tried
    if mode is GenerationMode.POSITIVE:
        assert sorted(tried) == labels, tried
    else:  # the operations with inputs a schema constrains
        assert {"POST /datapoint", "POST /datapoints/query", "GET /datapoints",
                "GET /settings"} <= set(tried), tried


def _case_runner(operation: Any, mode: GenerationMode, base_url: str,
                 tried: dict[str, int]) -> Callable[[], None]:
    label = operation.label

    @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None,
              deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        tried[label] = tried.get(label, 0) + 1
        case.call_and_validate(base_url=base_url.rstrip("/"), timeout=30,
                               additional_checks=[not_a_server_error],
                               excluded_checks=[positive_data_acceptance])

    return run
