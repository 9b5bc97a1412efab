"""The CLI helpers of the deploy commands: --since and log lines."""

from __future__ import annotations

import pytest

from lambdalite.errors import UsageError
from lambdalite.toolkit.deploy.commands import format_event, parse_since

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1w", 604800)])
def test_since_relative(text, seconds):
    assert parse_since(text, now=NOW) == int((NOW - seconds) * 1000)


def test_since_absolute():
    assert parse_since("2027-01-15T08:00:00+00:00") == 1_800_000_000_000
    assert parse_since("2027-01-15T08:00") == 1_800_000_000_000  # no zone: UTC


def test_since_nonsense():
    with pytest.raises(UsageError, match="--since takes"):
        parse_since("yesterday")


def test_log_line_shows_time_instance_and_message():
    event = {"timestamp": 1_800_000_000_123, "logStreamName": "2027/01/15/[$LATEST]0123456789abcdef", "message": "hi\n"}
    assert format_event(event) == "2027-01-15T08:00:00.123Z 01234567 hi"
