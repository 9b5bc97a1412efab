"""Where a function runs: Lambda's Python runtimes, the OS under each, and the two CPU architectures.

Wheels in an artifact must load on the runtime's OS, so the glibc version matters more than the
Python version: python3.11 runs on Amazon Linux 2 (glibc 2.26), python3.12 and python3.13 on
Amazon Linux 2023 (glibc 2.34). pip is offered every manylinux tag up to that glibc and nothing
newer, so it picks a wheel that loads there, or reports that none exists.

    target = Target("3.12", "arm64")
    target.runtime        # "python3.12"
    target.platforms()    # ("manylinux_2_34_aarch64", ..., "manylinux_2_17_aarch64", "manylinux2014_aarch64")
    target.base_image     # "public.ecr.aws/lambda/python:3.12-arm64"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

from lambdalite.errors import UsageError

__all__ = ["ARCHES", "DEFAULT_PYTHON", "RUNTIMES", "Arch", "Runtime", "Target"]

Arch = Literal["x86_64", "arm64"]
ARCHES: tuple[Arch, ...] = get_args(Arch)
# Lambda says arm64, wheels and uname say aarch64.
_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
_OLDEST_MANYLINUX = 17  # manylinux2014 == manylinux_2_17; older tags are not worth offering


class Runtime(NamedTuple):
    """One Lambda Python runtime: its identifier and the operating system it runs on."""

    name: str
    os: str
    glibc: tuple[int, int]


RUNTIMES: dict[str, Runtime] = {
    "3.11": Runtime("python3.11", "Amazon Linux 2", (2, 26)),
    "3.12": Runtime("python3.12", "Amazon Linux 2023", (2, 34)),
    "3.13": Runtime("python3.13", "Amazon Linux 2023", (2, 34)),
}
DEFAULT_PYTHON = "3.12"


@dataclass(frozen=True, slots=True)
class Target:
    """A Python version and an architecture on Lambda."""

    python: str = DEFAULT_PYTHON
    arch: Arch = "x86_64"

    def __post_init__(self) -> None:
        if self.python not in RUNTIMES:
            raise UsageError(
                f"Lambda has no managed runtime for Python {self.python} that lambdalite builds for "
                f"(choose {', '.join(RUNTIMES)})"
            )
        if self.arch not in ARCHES:
            raise UsageError(f"unknown architecture {self.arch!r} (choose {' or '.join(ARCHES)})")

    @property
    def runtime(self) -> str:
        return RUNTIMES[self.python].name

    @property
    def os(self) -> str:
        return RUNTIMES[self.python].os

    @property
    def glibc(self) -> tuple[int, int]:
        return RUNTIMES[self.python].glibc

    @property
    def machine(self) -> str:
        return _MACHINE[self.arch]

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def base_image(self) -> str:
        return f"public.ecr.aws/lambda/python:{self.python}-{self.arch}"

    @property
    def key(self) -> str:
        """A short name for caches: `cp312-x86_64-glibc2.34`."""
        return f"{self.abi}-{self.arch}-glibc{self.glibc[0]}.{self.glibc[1]}"

    def platforms(self) -> tuple[str, ...]:
        """The manylinux platform tags a wheel may carry to load here, newest first."""
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, _OLDEST_MANYLINUX - 1, -1)]
        return (*tags, f"manylinux2014_{self.machine}")

    def describe(self) -> str:
        """`python3.12 x86_64 (Amazon Linux 2023, glibc 2.34)`."""
        return f"{self.runtime} {self.arch} ({self.os}, glibc {self.glibc[0]}.{self.glibc[1]})"
