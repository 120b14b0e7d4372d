"""The one coercion every engine entry point applies to its array arguments."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.errors import InputError
from service.engine.inputs import int_array


def test_integers_of_the_right_shape_become_int64() -> None:
    out = int_array(np.array([[1, 2]], dtype=np.int32), "x", 2)
    assert out.dtype == np.int64 and out.tolist() == [[1, 2]]
    same = np.array([3, 4], dtype=np.int64)
    assert int_array(same, "x", 1) is same  # no copy: callers copy before they modify
    assert int_array([], "x", 1).dtype == np.int64  # an empty list is float to numpy


@pytest.mark.parametrize(
    ("value", "ndim", "message"),
    [
        ([1, 2], 2, "size_mib must have 2 dimensions, got shape (2,)"),
        ([1.5, 2.0], 1, "size_mib must hold integers, got dtype float64"),
        ([True, 1.0], 1, "size_mib must hold integers"),
    ],
)
def test_wrong_shape_or_dtype_names_the_argument(value: object, ndim: int, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        int_array(value, "size_mib", ndim)
