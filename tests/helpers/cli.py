"""Commands as users run them: curl, and the shape of a CLI failure."""

from __future__ import annotations

import subprocess


def curl(*args: str) -> tuple[int, str]:
    """curl as a user runs it; returns (HTTP status, body)."""
    proc = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    body, _, status = proc.stdout.rpartition("\n")
    return int(status), body


def one_line_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    """A CLI failure as users must see it: nonzero exit, one line on stderr, no traceback."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert message in lines[0], lines[0]
