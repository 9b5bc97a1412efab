"""The one settings record: every variable read once, every bad value one ConfigError at init."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lambdalite.errors import ConfigError
from lambdalite.settings import VARIABLES, Settings

# One value each variable refuses, and the words its error must use to say what is allowed.
BAD = {
    "LAMBDALITE_CORS_ORIGINS": ("https://app.example.com/page", "comma-separated origins"),
    "LAMBDALITE_RESPONSE": ("json", "one of djl, scores, top1"),
    "LAMBDALITE_MAX_BODY_BYTES": ("six", "a size in bytes"),
    "LAMBDALITE_MAX_IMAGE_BYTES": ("-1", "a positive size"),
    "LAMBDALITE_MAX_PIXELS": ("many", "a whole number, 1 or more"),
    "LAMBDALITE_MAX_JPEG_SCANS": ("0", "a whole number, 1 or more"),
    "LAMBDALITE_MAX_DECODE_BYTES": ("half", "a size in bytes"),
    "LAMBDALITE_MAX_BATCH": ("-3", "a whole number, 1 or more"),
    "LAMBDALITE_THREADS": ("0", "a whole number, 1 or more"),
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": ("1GB", "a whole number, 1 or more"),
    "LAMBDALITE_SOURCE_TIMEOUT": ("soon", "a number of seconds above 0"),
    "LAMBDALITE_CACHE_BYTES": ("lots", "a size in bytes"),
    "LAMBDALITE_ALLOW_PRIVATE_URLS": ("maybe", "1 or 0"),
    "LAMBDALITE_ALLOW_URL_NETWORKS": ("10.0.0.0/8,10.300.0.0/16", "CIDR networks"),
    "LAMBDALITE_URL_CONNECT_TIMEOUT": ("0", "a number of seconds above 0"),
    "LAMBDALITE_URL_TIMEOUT": ("inf", "a number of seconds above 0"),
    "LAMBDALITE_TRUST_CODE": ("please", "1 or 0"),
    "AWS_LAMBDA_LOG_FORMAT": ("yaml", "Text or JSON"),
    "AWS_LAMBDA_LOG_LEVEL": ("LOUD", "one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL"),
    "LAMBDALITE_METRICS_NAMESPACE": ("AWS/Lambda", "not starting with AWS/"),
    "LAMBDALITE_OUTPUT": ("my-bucket/results", "an S3 location such as s3://my-bucket/results"),
    "LAMBDALITE_TRIGGER": ("s3://Not_A_Bucket/in", "an S3 location"),
}
# Free text: any value is a value (a reference, a bucket, a path); what it names is checked when used.
FREE = {
    "LAMBDALITE_MODEL",
    "MODEL_BUCKET",
    "MODEL_KEY",
    "MODEL_SHA256",
    "LAMBDA_TASK_ROOT",
    "LAMBDALITE_HOME",
    "XDG_CACHE_HOME",
    "AWS_LAMBDA_INITIALIZATION_TYPE",  # set by Lambda; a value it adds later must not fail the init
    "AWS_LAMBDA_FUNCTION_NAME",
    "POWERTOOLS_SERVICE_NAME",
}


def test_every_variable_is_either_checked_here_or_free_text():
    assert {v.name for v in VARIABLES} == set(BAD) | FREE


@pytest.mark.parametrize(
    ("value", "snap_start"), [("snap-start", True), ("on-demand", False), ("provisioned-concurrency", False)]
)
def test_the_initialization_type_says_whether_this_init_makes_a_snapshot(value, snap_start):
    assert Settings.from_env({"AWS_LAMBDA_INITIALIZATION_TYPE": value}).snap_start is snap_start
    assert Settings.from_env({}).snap_start is False


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_is_one_config_error_naming_variable_value_and_what_is_allowed(name):
    value, allowed = BAD[name]
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    message = str(info.value)
    assert name in message and repr(value) in message and allowed in message, message
    assert "\n" not in message


def test_several_bad_values_are_named_in_one_error():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"LAMBDALITE_THREADS": "x", "LAMBDALITE_RESPONSE": "y"})
    assert "LAMBDALITE_THREADS" in str(info.value) and "LAMBDALITE_RESPONSE" in str(info.value)


def test_good_values_and_defaults():
    empty = Settings.from_env({})
    assert empty == Settings()
    settings = Settings.from_env(
        {
            "LAMBDALITE_RESPONSE": "top1",
            "LAMBDALITE_MAX_BODY_BYTES": "1M",
            "LAMBDALITE_THREADS": "3",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
            "LAMBDALITE_ALLOW_URL_NETWORKS": "10.0.0.0/8, fd00::/8",
            "LAMBDALITE_TRUST_CODE": "true",
            "LAMBDALITE_URL_TIMEOUT": "2.5",
        }
    )
    assert settings.response == "top1" and settings.max_body_bytes == 2**20 and settings.threads == 3
    assert settings.memory_mb == 2048 and settings.trust_code and settings.url_timeout == 2.5
    assert settings.allow_url_networks == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def test_the_cache_is_in_tmp_inside_a_function_and_in_the_user_cache_elsewhere(tmp_path):
    inside = Settings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"})
    assert inside.cache_home.name == "lambdalite" and inside.cache_home.parent == Path(os.environ.get("TMPDIR", "/tmp"))
    assert Settings.from_env({"XDG_CACHE_HOME": str(tmp_path)}).cache_home == tmp_path / "lambdalite"
    explicit = {"LAMBDALITE_HOME": str(tmp_path / "h"), "AWS_LAMBDA_FUNCTION_NAME": "f"}
    assert Settings.from_env(explicit).cache_home == tmp_path / "h"


HANDLER = "import lambdalite.handler"


@pytest.mark.parametrize("name", ["LAMBDALITE_ALLOW_URL_NETWORKS", "LAMBDALITE_RESPONSE", "LAMBDALITE_THREADS"])
def test_the_function_refuses_to_start_with_a_bad_value(tiny_bundle, name):
    """At init, before the model is loaded: not an internal error on every request later."""
    value, allowed = BAD[name]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDALITE_", "MODEL_"))}
    env = {**clean, "LAMBDALITE_MODEL": str(tiny_bundle.root), name: value}
    proc = subprocess.run([sys.executable, "-c", HANDLER], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lambdalite.errors.ConfigError:") and name in last and allowed in last, last


def test_invoke_local_passes_settings_without_touching_the_environment(tiny_bundle, tmp_path):
    from lambdalite.toolkit.local.invoke import invoke_local

    event = tmp_path / "event.json"
    event.write_text('{"images": []}')
    before = dict(os.environ)
    result = CliRunner().invoke(
        invoke_local, [str(tiny_bundle.root), str(event), "--response", "top1", "--env", "LAMBDALITE_THREADS=1"]
    )
    assert dict(os.environ) == before
    assert "EventError" in result.output  # it ran: an empty batch is the client's error


def test_the_readme_lists_every_variable():
    from helpers import REPO

    readme = (REPO / "README.md").read_text()
    missing = [v.name for v in VARIABLES if f"`{v.name}`" not in readme]
    assert missing == []


@pytest.mark.parametrize(
    ("output", "trigger", "loops"),
    [
        ("s3://photos/uploads/results", "s3://photos/uploads", True),  # inside the triggering prefix
        ("s3://photos/results", "s3://photos", True),  # the whole bucket triggers
        ("s3://photos", "s3://photos/in", True),  # results for in/x land under in/
        ("s3://photos/a", "s3://photos/a/a", True),  # a/ + a/a/x starts with a/a/
        ("s3://photos/results", "s3://photos/uploads", False),
        ("s3://photos/uploads-results", "s3://photos/uploads", False),  # prefixes are folders: uploads/
        ("s3://results/uploads", "s3://photos/uploads", False),  # another bucket
        ("s3://photos/b", "s3://photos/a/a", False),
    ],
)
def test_an_output_the_trigger_would_fire_on_is_refused_at_init(output, trigger, loops):
    env = {"LAMBDALITE_OUTPUT": output, "LAMBDALITE_TRIGGER": trigger}
    if not loops:
        settings = Settings.from_env(env)
        assert str(settings.output).rstrip("/") == output and str(settings.trigger).rstrip("/") == trigger
        return
    with pytest.raises(ConfigError, match="would trigger the function again") as info:
        Settings.from_env(env)
    assert "recursive loop" in str(info.value) and "\n" not in str(info.value)
