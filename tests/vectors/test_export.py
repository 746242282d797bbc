"""The exporter: a property test's example written as a step vector runs green against the store
it came from, and `vector_on_failure` writes the example hypothesis reports (the shrunk one)."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pchain.consensus import get_head
from p2pchain.testing.consensus import Simulation, feed_in_order, scenarios
from p2pchain.testing.vectors import (
    build_export,
    export_vector,
    load_vector,
    run_vector,
    run_vector_on_node,
    vector_on_failure,
)


@settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.randoms(use_true_random=False))
def test_an_exported_shuffled_scenario_round_trips(tmp_path_factory, scenario, shuffle):
    messages = [*scenario.blocks, *scenario.votes]
    shuffle.shuffle(messages)
    path = tmp_path_factory.mktemp("export") / "shuffled.json"
    vector = export_vector(
        path,
        scenario.params,
        scenario.genesis,
        messages,
        "a shuffled scenario",
        current_slot=scenario.last_slot,
        retry=True,
    )
    assert load_vector(path) == vector
    assert run_vector(vector) == []
    fed = feed_in_order(scenario.params, scenario.genesis, messages, scenario.last_slot)
    checks = vector.steps[-1]
    assert checks.head == get_head(fed)
    assert checks.finalized == fed.finalized_checkpoint


def test_an_exported_simulation_round_trips_on_the_store_and_a_node(tmp_path):
    sim = Simulation.create([10**9] * 4)
    sim.run_epochs(3)
    vector = export_vector(tmp_path / "sim.json", sim.params, sim.genesis, sim.messages, "sim")
    assert run_vector(vector) == []
    assert run_vector_on_node(vector) == []
    assert vector.steps[-1].finalized == sim.store.finalized_checkpoint


def test_messages_refused_for_good_are_recorded_with_their_reason():
    sim = Simulation.create([10**9] * 4)
    sim.run_epochs(1)
    block = next(m for m in sim.messages if hasattr(m, "header"))
    vector = build_export(sim.params, sim.genesis, [block, block], "twice")
    deliveries = [step for step in vector.steps if hasattr(step, "kind")]
    assert [d.valid for d in deliveries] == [True, False]
    assert deliveries[1].reason.value == "duplicate-block"
    assert run_vector(vector) == []


def test_a_failing_property_writes_its_shrunk_example(tmp_path):
    """The example written is the one hypothesis reports: the last run, after shrinking."""
    seen = []

    @settings(max_examples=50, database=None, derandomize=True)
    @given(scenarios(epochs=2), st.integers(min_value=0, max_value=1_000))
    def prop(scenario, seed):
        messages = [*scenario.blocks, *scenario.votes]
        random.Random(seed).shuffle(messages)
        with vector_on_failure(
            "failing-prop",
            scenario.params,
            scenario.genesis,
            messages,
            description="a property that fails once there are two blocks",
            current_slot=scenario.last_slot,
            retry=True,
            directory=tmp_path,
        ):
            seen.append(len(scenario.blocks))
            assert len(scenario.blocks) < 2

    with pytest.raises(AssertionError):
        prop()
    written = sorted(tmp_path.iterdir())
    assert [path.name for path in written] == ["failing-prop.json"]
    vector = load_vector(written[0])
    assert run_vector(vector) == []
    blocks = [step for step in vector.steps if getattr(step, "kind", None) == "block"]
    assert len(blocks) == 2  # the shrunk example: exactly two blocks
    assert min(n for n in seen if n >= 2) == 2


def test_outside_hypothesis_the_failure_path_exports_too(tmp_path):
    sim = Simulation.create([10**9] * 4)
    sim.run_epochs(1)
    with (
        pytest.raises(RuntimeError, match="boom"),
        vector_on_failure(
            "plain",
            sim.params,
            sim.genesis,
            sim.messages,
            description="a plain test",
            directory=tmp_path,
        ),
    ):
        raise RuntimeError("boom")
    assert run_vector(load_vector(tmp_path / "plain.json")) == []
