"""The small shared helpers of service_kit that have logic of their own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from service_kit.histograms import observe_many

BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 10.0)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for m in registry.collect() for s in m.samples
            if not s.name.endswith("_created")}


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False) | st.sampled_from(BUCKETS), max_size=50))
def test_observe_many_equals_observe_one_by_one(values: list[float]) -> None:
    one, many = CollectorRegistry(), CollectorRegistry()
    h_one = Histogram("lat", "x", ["r"], buckets=BUCKETS, registry=one).labels("eu")
    h_many = Histogram("lat", "x", ["r"], buckets=BUCKETS, registry=many).labels("eu")
    for value in values:
        h_one.observe(value)
    observe_many(h_many, values)
    expected, got = _samples(one), _samples(many)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key
