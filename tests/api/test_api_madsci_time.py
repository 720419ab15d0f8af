"""MADSci's own ``DataClient`` (0.8.1, its own venv) and the bench, both in America/Chicago:
naive and aware timestamps round-trip exactly, across DST changes, and the bench stores
the true instant.

The client runs in a subprocess with ``TZ`` in its environment; the bench's zone follows
``TZ`` too (``app.core.timestamps.bench_zone``), set here with monkeypatch, which restores it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.api.server import ApiServer
from app.service import BenchService
from tests.support.madsci_env import run_madsci

CHICAGO = "America/Chicago"

SCRIPT = r"""
import json, sys, warnings
from datetime import datetime, timedelta, timezone
warnings.simplefilter("ignore")
from madsci.client.data_client import DataClient
from madsci.common.types.datapoint_types import ValueDataPoint

client = DataClient(data_server_url=sys.argv[1])
sent = {
    "default": None,  # MADSci's default: datetime.now(), naive local time
    "winter": datetime(2026, 1, 15, 6, 0, 0, 500000),
    "summer": datetime(2026, 7, 15, 6, 0),
    "skipped": datetime(2026, 3, 8, 2, 30),    # does not exist in Chicago
    "repeated": datetime(2026, 11, 1, 1, 30),  # happens twice in Chicago
    "offset": datetime(2026, 1, 15, 6, 0, tzinfo=timezone(timedelta(hours=2))),
    "utc": datetime(2026, 1, 15, 6, 0, tzinfo=timezone.utc),
}
report = {"rows": {}}
for name, when in sent.items():
    extra = {} if when is None else {"data_timestamp": when}
    before = datetime.now(timezone.utc)
    dp = ValueDataPoint(label=name, value=name, **extra)
    returned = client.submit_datapoint(dp)
    after = datetime.now(timezone.utc)
    fetched = client.get_datapoint(dp.datapoint_id)
    report["rows"][name] = {
        "id": dp.datapoint_id, "sent": dp.data_timestamp.isoformat(),
        "returned": returned.data_timestamp.isoformat(),
        "fetched": fetched.data_timestamp.isoformat(),
        "equal": returned.data_timestamp == dp.data_timestamp == fetched.data_timestamp,
        "before": before.isoformat(), "after": after.isoformat()}
listed = client.get_datapoints(number=0)
report["listed"] = [d.label for d in listed]
# MADSci code such as this must keep working on naive timestamps.
report["recent"] = [d.label for d in listed if d.data_timestamp.tzinfo is None
                    and d.data_timestamp > datetime.now() - timedelta(hours=1)]
report["queried"] = sorted(d.label for d in client.query_datapoints(
    {"label": {"$in": ["winter", "summer"]}}).values())
print("REPORT " + json.dumps(report))
"""

UTC = timezone.utc
EXPECTED_INSTANTS = {
    "winter": datetime(2026, 1, 15, 12, 0, 0, 500000, tzinfo=UTC),  # CST, UTC-6
    "summer": datetime(2026, 7, 15, 11, 0, tzinfo=UTC),  # CDT, UTC-5
    "skipped": datetime(2026, 3, 8, 8, 30, tzinfo=UTC),  # offset before the change
    "repeated": datetime(2026, 11, 1, 6, 30, tzinfo=UTC),  # first occurrence
    "offset": datetime(2026, 1, 15, 4, 0, tzinfo=UTC),
    "utc": datetime(2026, 1, 15, 6, 0, tzinfo=UTC),
}


def test_madsci_client_round_trips_naive_and_aware_timestamps_in_chicago(
        madsci_python: Path, server: ApiServer, service: BenchService, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", CHICAGO)
    result = run_madsci(madsci_python, SCRIPT, server.url, timeout=150, env={"TZ": CHICAGO})
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, result.stdout + result.stderr[-3000:]
    import json

    report = json.loads(lines[-1][len("REPORT "):])
    rows = report["rows"]
    for name, row in rows.items():
        # The exact form comes back: naive stays naive, an offset stays that offset.
        assert row["returned"] == row["sent"] and row["fetched"] == row["sent"], (name, row)
        assert row["equal"], name
    assert rows["default"]["sent"].count("+") == 0 and not rows["default"]["sent"].endswith("Z")
    assert rows["offset"]["sent"].endswith("+02:00") and rows["utc"]["sent"].endswith("+00:00")
    # The bench stored the true instant.
    instants = {name: service.get(row["id"]).data_instant for name, row in rows.items()}
    for name, expected in EXPECTED_INSTANTS.items():
        assert instants[name] == expected, name
    default = rows["default"]
    assert (datetime.fromisoformat(default["before"]) <= instants["default"]
            <= datetime.fromisoformat(default["after"]))
    # Listed newest first in true time order, whatever form each was sent in.
    assert report["listed"] == sorted(instants, key=instants.__getitem__, reverse=True)
    assert report["recent"] == ["default"]
    assert report["queried"] == ["summer", "winter"]
