"""A dict output's keys merge into the variables by value, whichever key objects the step
returns: the same literal every call, a new string each call, more distinct keys than the run
keeps (the run reuses the key it made for a key object it saw before)."""

from __future__ import annotations

from typing import Any

from batten import ToolStep, Workflow, WorkflowContext

N = 60


class Key(str):
    """A str subclass key: merged under its str value."""


def step(i: int) -> Any:
    def run(context: Any) -> dict[str, int]:
        # Every key this step's ancestors wrote is visible with the last value written.
        for j in range(i):
            assert context[f"k{j % 25}"] == max(x for x in range(i) if x % 25 == j % 25)
        assert context["counter"] == i
        out = {"counter": context["counter"] + 1}
        out["".join(["k", str(i % 25)])] = i  # a new key object on every call
        out[Key("sub")] = i
        return out

    return run


def test_dict_output_keys_merge_by_value_over_many_key_objects() -> None:
    wf = Workflow("keys", "keys")
    prev: list[str] = []
    for i in range(N):
        wf.add_step(ToolStep(f"s{i}", step(i)), depends_on=prev)
        prev = [f"s{i}"]
    for _ in range(2):  # a second run of the same plan starts from a fresh set of keys
        result = wf.run(WorkflowContext("keys", variables={"counter": 0}))
        assert result.status.value == "completed", result.error
        assert result.context["counter"] == N
        assert result.context["sub"] == N - 1
        for k in range(25):
            assert result.context[f"k{k}"] == max(x for x in range(N) if x % 25 == k)
