"""Lambda targets: which wheels load on which runtime."""

from __future__ import annotations

import pytest

from lambdalite.errors import UsageError
from lambdalite.toolkit.deploy.target import RUNTIMES, Target


def test_al2023_platforms_go_up_to_its_glibc():
    target = Target("3.12", "arm64")
    assert target.runtime == "python3.12"
    assert target.machine == "aarch64"
    assert target.abi == "cp312"
    tags = target.platforms()
    assert tags[0] == "manylinux_2_34_aarch64"
    assert "manylinux_2_28_aarch64" in tags and "manylinux2014_aarch64" in tags
    assert "manylinux_2_35_aarch64" not in tags
    assert all(tag.endswith("_aarch64") for tag in tags)
    assert target.base_image == "public.ecr.aws/lambda/python:3.12-arm64"


def test_python311_runs_on_amazon_linux_2():
    target = Target("3.11")
    assert target.os == "Amazon Linux 2" and target.glibc == (2, 26)
    tags = target.platforms()
    assert tags[0] == "manylinux_2_26_x86_64"
    # numpy 2.4 and Pillow 13 wheels are manylinux_2_27/2_28; they must not be offered here.
    assert "manylinux_2_27_x86_64" not in tags and "manylinux_2_28_x86_64" not in tags
    assert target.describe() == "python3.11 x86_64 (Amazon Linux 2, glibc 2.26)"


def test_every_runtime_has_a_distinct_cache_key():
    keys = {Target(py, arch).key for py in RUNTIMES for arch in ("x86_64", "arm64")}
    assert len(keys) == 2 * len(RUNTIMES)


@pytest.mark.parametrize(("python", "arch"), [("3.10", "x86_64"), ("3.12", "aarch64")])
def test_unknown_targets_are_refused(python, arch):
    with pytest.raises(UsageError):
        Target(python, arch)  # type: ignore[arg-type]
