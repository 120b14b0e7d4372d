from __future__ import annotations

import numpy as np
import pytest

from service.engine import TopologyError, worst_case_template
from tests.engine.test_seed_examples import _snc_slit


def test_1_node_and_16_node_hosts_give_16_vnodes_with_the_16_node_classes() -> None:
    t = worst_case_template([np.array([[10]]), _snc_slit()])
    assert t.vnodes == 16
    assert t.source_host_index == 1
    assert t.classes == (10, 12, 32)
    assert (t.distances == _snc_slit()).all()


def test_ties_prefer_more_classes_then_larger_distance() -> None:
    a = np.array([[10, 20], [20, 10]])
    b = np.array([[10, 21], [31, 10]])
    c = np.array([[10, 40], [40, 10]])
    assert worst_case_template([a, b, c]).source_host_index == 1
    assert worst_case_template([a, c]).source_host_index == 1


def test_empty_and_invalid_inputs_are_rejected() -> None:
    with pytest.raises(TopologyError):
        worst_case_template([])
    with pytest.raises(TopologyError) as ei:
        worst_case_template([np.array([[10]]), [[10, 5], [20, 10]]])
    assert ei.value.issues[0].loc == ("hosts", 1, "distances", 0, 1)
