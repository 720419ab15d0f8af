"""app.core.backoff: the one retry delay every component uses."""

from __future__ import annotations

import random

import pytest

from app.core.backoff import backoff_delay


def test_doubles_from_base_up_to_the_cap_without_jitter() -> None:
    delays = [backoff_delay(n, base=1.0, cap=10.0, jitter=False) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_an_attempt_below_one_waits_the_base() -> None:
    assert backoff_delay(0, base=0.5, cap=60.0, jitter=False) == 0.5
    assert backoff_delay(-3, base=0.5, cap=60.0, jitter=False) == 0.5


def test_huge_attempt_counts_stay_at_the_cap() -> None:
    assert backoff_delay(10_000, base=1.0, cap=300.0, jitter=False) == 300.0


@pytest.mark.parametrize("attempt", [1, 3, 9, 40])
def test_jitter_stays_within_the_upper_half_of_the_nominal_delay(attempt: int) -> None:
    rng = random.Random(attempt)
    nominal = backoff_delay(attempt, base=1.0, cap=300.0, jitter=False)
    drawn = [backoff_delay(attempt, base=1.0, cap=300.0, rng=rng) for _ in range(200)]
    assert all(nominal / 2 <= d <= nominal for d in drawn)
    assert len(set(drawn)) > 1  # it does spread retries out


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [backoff_delay(n, base=1.0, cap=60.0, rng=random.Random(7)) for n in range(1, 5)]
    again = [backoff_delay(n, base=1.0, cap=60.0, rng=random.Random(7)) for n in range(1, 5)]
    assert first == again
