"""Lambda's environment variables, the user's on top, and SAM's env.json."""

from __future__ import annotations

import json
import re

import pytest

from lambdalite.errors import UsageError
from lambdalite.toolkit.local.environment import (
    check_user_environment,
    lambda_environment,
    load_env_file,
    log_stream_name,
    parse_env_pairs,
)
from lambdalite.toolkit.local.messages import FunctionConfig


def test_env_pairs():
    assert parse_env_pairs(["A=1", "B=x=y", "EMPTY="]) == {"A": "1", "B": "x=y", "EMPTY": ""}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_env_pairs(["novalue"])


def test_seed_004_env_json(tmp_path):
    path = tmp_path / "env.json"
    path.write_text(json.dumps({"PyTorchFunction": {"MODEL_BUCKET": "bucket", "MODEL_KEY": "model.tar.gz"}}))
    # One function in the file: it is the one served, whatever its logical id.
    assert load_env_file(path, "efficientnet-lite0") == {"MODEL_BUCKET": "bucket", "MODEL_KEY": "model.tar.gz"}


def test_env_json_parameters_then_the_functions_own(tmp_path):
    path = tmp_path / "env.json"
    path.write_text(
        json.dumps({"Parameters": {"STAGE": "dev", "N": 3, "ON": True}, "Api": {"STAGE": "prod"}, "Other": {"X": "1"}})
    )
    assert load_env_file(path, "Api") == {"STAGE": "prod", "N": "3", "ON": "true"}
    with pytest.raises(UsageError, match="Api, Other"):
        load_env_file(path, "neither")
    path.write_text(json.dumps({"Parameters": {"STAGE": "dev"}}))
    assert load_env_file(path, "anything") == {"STAGE": "dev"}


@pytest.mark.parametrize(
    ("content", "message"),
    [("{nope", "not valid JSON"), ("[1]", "expected"), ('{"F": {"K": [1]}}', "string, number or boolean")],
)
def test_bad_env_json(tmp_path, content, message):
    path = tmp_path / "env.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=re.escape(message)):
        load_env_file(path, "F")


def test_reserved_keys_syntax_and_the_4_kb_quota():
    check_user_environment({"STAGE": "dev", "a_1": "x"})
    with pytest.raises(UsageError, match="reserved environment variables: AWS_REGION, _HANDLER"):
        check_user_environment({"AWS_REGION": "eu-west-1", "_HANDLER": "x"})
    with pytest.raises(UsageError, match="must match"):
        check_user_environment({"1BAD": "x"})
    check_user_environment({"BIG": "x" * 4093})
    with pytest.raises(UsageError, match="4 KB"):
        check_user_environment({"BIG": "x" * 4094})


def test_lambda_variables_with_the_users_on_top():
    config = FunctionConfig(
        name="fn",
        handler="app.handler",
        code_dir="/code",
        memory_mb=2048,
        environment={"STAGE": "dev"},
        model_dir="/models/m",
        region="eu-west-1",
    )
    env = lambda_environment(config, pythonpath=["/code", "/src", "/code"], runtime_dir="/rt")
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fn"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "2048"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/fn"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_EXECUTION_ENV"].startswith("AWS_Lambda_python3.")
    assert env["LAMBDA_TASK_ROOT"] == "/code" and env["LAMBDA_RUNTIME_DIR"] == "/rt"
    assert env["_HANDLER"] == "app.handler" and env["TZ"] == ":UTC"
    assert env["PYTHONPATH"] == "/code:/src"
    assert env["LAMBDALITE_MODEL"] == "/models/m"
    assert env["STAGE"] == "dev"
    assert all(env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"))
    assert "_LAMBDA_TELEMETRY_LOG_FD" not in env  # awslambdaric would write framed records to it
    assert "AWS_LAMBDA_RUNTIME_API" not in env  # per instance
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", env["AWS_LAMBDA_LOG_STREAM_NAME"])
    assert log_stream_name("3").split("/")[-1].startswith("[3]")
