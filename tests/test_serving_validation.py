"""Request validation: every bad input gets a reason code and a message naming the problem."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from serving_models import IRIS_FEATURES, build_iris, build_mixed
from vigil.config import load
from serving.errors import RequestError
from vigil.config import to_env
from serving.validation import Validator


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    return build_iris(tmp_path_factory.mktemp("iris"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return build_mixed(tmp_path_factory.mktemp("mixed"))


def _reject(validator: Validator, body: bytes | object) -> RequestError:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(RequestError) as info:
        validator.parse_body(raw)
    return info.value


ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.mark.parametrize(
    "body, reason, words",
    [
        (b"{not json", "invalid_json", ["not valid JSON"]),
        (b"", "invalid_json", ["empty"]),
        (b'{"instances": [[1, NaN, 2, 3]]}', "non_finite", ["NaN/Infinity"]),
        (b'{"instances": [[1, -Infinity, 2, 3]]}', "non_finite", ["NaN/Infinity"]),
        (b'{"instances": [[1, 1e400, 2, 3]]}', "non_finite", ["too large"]),
        (b'{"instances": [[1, 1e300, 2, 3]]}', "out_of_range", ["sepal_width", "instances[0]", "float32"]),
        ([1, 2], "bad_body", ["JSON object"]),
        ({"rows": [ROW]}, "missing_instances", ['"instances"']),
        ({"instances": "abc"}, "bad_instances", ["list"]),
        ({"instances": []}, "empty_instances", ["empty"]),
        ({"instances": [ROW] * 1025}, "too_many_rows", ["1025", "1024"]),
        ({"instances": [ROW, [1, 2, 3]]}, "wrong_feature_count", ["instances[1]", "3 values", "expected 4"]),
        ({"instances": [ROW, "x"]}, "bad_row", ["instances[1]", "str"]),
        ({"instances": [[1, "a", 2, 3]]}, "expected_number", ["sepal_width", "instances[0]", "'a'"]),
        ({"instances": [[1, 2, True, 3]]}, "expected_number", ["petal_length", "boolean"]),
        ({"instances": [[1, 2, None, 3]]}, "expected_number", ["petal_length", "null"]),
        ({"instances": [dict(zip(IRIS_FEATURES, ROW)) | {"colour": 1}]}, "unknown_feature", ["colour"]),
        ({"instances": [{"sepal_length": 1, "sepal_width": 2}]}, "missing_feature", ["petal_length", "petal_width"]),
        ({"instances": [ROW, ROW], "ids": ["a"]}, "ids_mismatch", ["1 entries", "2 rows"]),
        ({"instances": [ROW], "ids": [7]}, "bad_ids", ["ids[0]", "string"]),
        ({"instances": [ROW], "ids": "a"}, "bad_ids", ["list"]),
    ],
)
def test_bad_input_is_named(iris, body, reason, words):
    error = _reject(Validator(iris.schema, 1024), body)
    assert error.reason == reason, error.message
    for word in words:
        assert word in error.message, (word, error.message)
    assert error.status == 400


def test_good_rows_as_lists_and_objects_agree(iris):
    validator = Validator(iris.schema, 1024)
    as_lists = validator.parse_body(orjson.dumps({"instances": iris.rows}))
    as_objects = validator.parse_body(
        orjson.dumps({"instances": [dict(zip(reversed(IRIS_FEATURES), reversed(r))) for r in iris.rows]})
    )
    assert as_lists.rows == len(iris.rows) and as_lists.ids is None
    assert as_lists.inputs["X"].dtype == np.float32 and as_lists.inputs["X"].shape == (len(iris.rows), 4)
    np.testing.assert_array_equal(as_lists.inputs["X"], as_objects.inputs["X"])


def test_ids_are_kept(iris):
    parsed = Validator(iris.schema, 1024).parse_body(orjson.dumps({"instances": [ROW, ROW], "ids": ["a", "b"]}))
    assert parsed.ids == ["a", "b"]


def test_mixed_model_builds_one_input_per_column(mixed):
    validator = Validator(mixed.schema, 1024)
    parsed = validator.parse_body(orjson.dumps({"instances": mixed.rows[:3]}))
    assert set(parsed.inputs) == {"age", "income", "city", "plan"}
    assert parsed.inputs["age"].shape == (3, 1) and parsed.inputs["age"].dtype == np.float32
    assert parsed.inputs["city"].dtype == object and parsed.inputs["city"][0, 0] == mixed.rows[0][2]


def test_mixed_model_names_type_errors(mixed):
    validator = Validator(mixed.schema, 1024)
    row = list(mixed.rows[0])
    error = _reject(validator, {"instances": [row, [row[0], row[1], 3, row[3]]]})
    assert error.reason == "expected_string" and "'city'" in error.message and "instances[1]" in error.message
    error = _reject(validator, {"instances": [[ "old", row[1], row[2], row[3]]]})
    assert error.reason == "expected_number" and "'age'" in error.message and "'old'" in error.message


def test_settings_round_trip_through_env(tmp_path):
    """serve_command passes Settings to the server as VIGIL_* variables: nothing may be lost."""
    settings = load({"VIGIL_HOME": str(tmp_path), "VIGIL_MAX_BATCH_SIZE": "7", "VIGIL_MODEL": str(tmp_path)})
    assert load(to_env(settings)) == settings
