"""batten.display: Mermaid diagrams of workflows, Jupyter HTML, and tables of run results.

No Mermaid parser runs offline, so ``check_flowchart`` checks the structure each diagram must
have for Mermaid to read it: every line is one of the forms batten emits, ids are plain
``n<k>`` / ``g<k>``, labels are quoted with no raw quote inside, subgraphs are balanced, edges
come after every node (outside any subgraph) and join ids that exist.
"""

from __future__ import annotations

import html
import itertools
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest
from batten import (
    AgentStep,
    ConditionalStep,
    HumanApprovalStep,
    LoopStep,
    MapStep,
    ParallelStep,
    RetryPolicy,
    RouterStep,
    StepStatus,
    SubWorkflowStep,
    ToolStep,
    Workflow,
    WorkflowBuilder,
    WorkflowStatus,
)
from batten.display import (
    MERMAID_CDN,
    _format_ms,
    result_html,
    result_text,
    to_mermaid,
    to_svg,
    workflow_html,
    workflow_mimebundle,
)

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

LABEL = r'"[^"\n]*"'
NODE = re.compile(
    rf"(?P<id>n\d+)(?:\[{LABEL}\]|\{{{LABEL}\}}|\{{\{{{LABEL}\}}\}}|\[\[{LABEL}\]\]|\(\[{LABEL}\]\))$"
)
SUBGRAPH = re.compile(rf"subgraph (?P<id>g\d+)\[{LABEL}\]$")
EDGE = re.compile(
    rf"(?P<src>[ng]\d+) (?:-->|-\.->)(?:\|(?:[A-Za-z0-9_ ]+|{LABEL})\|)? (?P<dst>[ng]\d+)$"
)
STYLE = re.compile(r"classDef missing stroke-dasharray:5 5$|class n\d+ missing$")


class Chart:
    """A parsed flowchart: node/subgraph labels, where each sits, and the edges."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.labels: dict[str, str] = {}  # id -> the whole definition line (stripped)
        self.parent: dict[str, str | None] = {}  # id -> enclosing subgraph id
        self.edges: list[str] = []


def check_flowchart(text: str, direction: str = "TD") -> Chart:
    """Checks ``text`` is a flowchart batten could have emitted and Mermaid can parse."""
    lines = text.split("\n")
    assert lines[0] == f"flowchart {direction}"
    chart = Chart(text)
    stack: list[str] = []
    edges_started = False
    for line in lines[1:]:
        assert line == line.rstrip() and line.startswith("    "), repr(line)
        body = line.strip()
        indent = (len(line) - len(line.lstrip(" "))) // 4
        if edges_started:
            assert EDGE.match(body) or STYLE.match(body), f"not an edge: {line!r}"
        if m := NODE.match(body):
            assert indent == len(stack) + 1, line
            ident = m["id"]
        elif m := SUBGRAPH.match(body):
            assert indent == len(stack) + 1, line
            ident = m["id"]
        elif body == "end":
            assert stack, "an 'end' closes no subgraph"
            stack.pop()
            assert indent == len(stack) + 1, line
            continue
        elif m := EDGE.match(body):
            assert not stack, f"edge inside a subgraph: {line!r}"
            edges_started = True
            for end in (m["src"], m["dst"]):
                assert end in chart.labels, f"edge to an undefined id: {line!r}"
            chart.edges.append(body)
            continue
        elif STYLE.match(body):
            edges_started = True
            continue
        else:
            raise AssertionError(f"unexpected line {line!r}")
        assert ident not in chart.labels, f"duplicate id {ident}"
        chart.labels[ident] = body
        chart.parent[ident] = stack[-1] if stack else None
        if body.startswith("subgraph "):
            stack.append(ident)
    assert not stack, "unclosed subgraph"
    assert len(chart.edges) == len(set(chart.edges)), "duplicate edges"
    return chart


def node_id(chart: Chart, label_start: str) -> str:
    """The id of the only node or subgraph whose label starts with ``label_start``."""
    found = [
        ident
        for ident, line in chart.labels.items()
        if re.match(rf'(?:subgraph )?{ident}[\[{{(]+"{re.escape(label_start)}', line)
    ]
    assert len(found) == 1, (label_start, found, chart.text)
    return found[0]


def fetch() -> int:
    return 1


def run_ruff(item: Any) -> Any:
    return item


def is_valid(context: Any) -> bool:
    return True


class Summariser:
    def run(self, message: str) -> str:
        return message


def diamond() -> Workflow:
    wf = Workflow("diamond", "Diamond")
    wf.add_step(ToolStep("a", fetch), [])
    wf.add_step(AgentStep("b", Summariser(), "sum {a.result}"), ["a"])
    wf.add_step(AgentStep("c", "writer"), ["a"])
    wf.add_step(ToolStep("d", lambda: 0), ["b", "c"])
    return wf


# --------------------------------------------------------------------------------------------
# to_mermaid: plain DAGs
# --------------------------------------------------------------------------------------------


def test_diamond_nodes_and_edges() -> None:
    text = to_mermaid(diamond())
    chart = check_flowchart(text)
    assert chart.labels == {
        "n0": 'n0["a<br/>tool: fetch"]',
        "n1": 'n1["b<br/>agent: Summariser"]',
        "n2": 'n2["c<br/>agent: writer"]',
        "n3": 'n3["d<br/>tool: #lt;lambda#gt;"]',
    }
    assert chart.edges == ["n0 --> n1", "n0 --> n2", "n1 --> n3", "n2 --> n3"]


def test_kind_names_for_registry_names_methods_and_settings() -> None:
    wf = Workflow("w")
    wf.add_step(AgentStep("planner"))  # no agent: the registry name is the step id
    wf.add_step(ToolStep("m", Summariser().run))
    wf.add_step(
        ToolStep("slow", fetch)
        .with_retry(2)
        .with_timeout(1.5)
        .add_condition(lambda c: True)
        .with_cache(60)
    )
    chart = check_flowchart(to_mermaid(wf))
    assert chart.labels["n0"] == 'n0["planner<br/>agent: planner"]'
    assert chart.labels["n1"] == 'n1["m<br/>tool: Summariser.run"]'
    assert chart.labels["n2"] == (
        'n2["slow<br/>tool: fetch<br/>up to 3 attempts, timeout 1.5s, 1 condition, cached"]'
    )
    # add_step without depends_on chains the steps
    assert chart.edges == ["n0 --> n1", "n1 --> n2"]


def test_direction() -> None:
    wf = diamond()
    for direction in ("TD", "LR", "BT", "RL"):
        text = to_mermaid(wf, direction=direction)
        check_flowchart(text, direction)
    assert to_mermaid(wf).split("\n")[1:] == to_mermaid(wf, direction="LR").split("\n")[1:]
    for bad in ("td", "TB", "", "LR; click", None, 1):
        with pytest.raises(ValueError, match="direction must be one of"):
            to_mermaid(wf, direction=bad)  # type: ignore[arg-type]


def test_rejects_non_workflows() -> None:
    with pytest.raises(TypeError, match=r"batten\.Workflow"):
        to_mermaid([ToolStep("a", fetch)])
    with pytest.raises(TypeError):
        workflow_html("wf")


def test_dag_workflow_draws_its_workflow() -> None:
    dag = (
        WorkflowBuilder("jc")
        .step("plan", "planner", "do it")
        .step("write", "writer", "w", depends_on=["plan"])
        .build(title="T")
    )
    assert to_mermaid(dag) == to_mermaid(dag.workflow)
    assert check_flowchart(to_mermaid(dag)).edges == ["n0 --> n1"]
    assert workflow_mimebundle(dag)["text/plain"] == repr(dag)


def test_deterministic() -> None:
    first, second = diamond(), diamond()
    assert to_mermaid(first) == to_mermaid(first) == to_mermaid(second)
    assert workflow_html(first) == workflow_html(second)
    # declaration order, not id order
    wf = Workflow("w")
    wf.add_step(ToolStep("z", fetch), [])
    wf.add_step(ToolStep("a", fetch), [])
    chart = check_flowchart(to_mermaid(wf))
    assert chart.labels["n0"].startswith('n0["z') and chart.labels["n1"].startswith('n1["a')


def test_odd_ids_are_escaped() -> None:
    odd = ["a-b", "x.y", "has space", 'quote"', "end", "<b>&amp;", "#35;", "tick`", "100%"]
    wf = Workflow("w")
    for sid in odd:
        wf.add_step(ToolStep(sid, fetch))
    wf.add_step(ToolStep("two\nlines", fetch))
    wf.add_step(ToolStep("direction LR", fetch))
    text = to_mermaid(wf)
    chart = check_flowchart(text)
    assert list(chart.labels) == [f"n{i}" for i in range(len(odd) + 2)]
    labels = [line.split('"')[1].split("<br/>")[0] for line in chart.labels.values()]
    assert labels == [
        "a-b",
        "x.y",
        "has space",
        "quote#quot;",
        "end",
        "#lt;b#gt;#amp;amp;",
        "#35;35;",
        "tick#96;",
        "100#37;",
        "two lines",
        "#100;irection LR",
    ]
    # the step ids never reach the syntax: no id, edge or keyword is made of them
    assert [e.split(" --> ") for e in chart.edges] == [
        [f"n{i}", f"n{i + 1}"] for i in range(len(odd) + 1)
    ]
    assert "direction LR" not in text and "`" not in text


# --------------------------------------------------------------------------------------------
# to_mermaid: composite steps
# --------------------------------------------------------------------------------------------


def test_conditional_is_a_rhombus_with_true_and_false_edges() -> None:
    wf = Workflow("w")
    wf.add_step(ToolStep("start", fetch))
    wf.add_step(ConditionalStep("check", is_valid, ToolStep("yes", fetch), ToolStep("no", fetch)))
    wf.add_step(ToolStep("after", fetch))
    only_true = ConditionalStep("only_true").condition(lambda c: False)
    wf.add_step(only_true.if_true(ToolStep("t", fetch)))
    chart = check_flowchart(to_mermaid(wf))
    group, test = node_id(chart, "check (conditional)"), node_id(chart, "check<br/>")
    assert chart.labels[test] == f'{test}{{"check<br/>if is_valid"}}'
    yes, no = node_id(chart, "yes"), node_id(chart, "no")
    assert chart.parent[test] == chart.parent[yes] == chart.parent[no] == group
    assert chart.parent[group] is None
    start, after = node_id(chart, "start"), node_id(chart, "after")
    assert f"{test} -->|true| {yes}" in chart.edges
    assert f"{test} -->|false| {no}" in chart.edges
    # the dependency edges enter at the test and leave from the whole step
    assert f"{start} --> {test}" in chart.edges
    assert f"{group} --> {after}" in chart.edges
    only = node_id(chart, "only_true<br/>")
    assert [e for e in chart.edges if e.startswith(f"{only} ")] == [
        f"{only} -->|true| {node_id(chart, 't<br/>')}"
    ]


def test_parallel_is_a_subgraph_of_its_branches() -> None:
    wf = Workflow("w")
    wf.add_step(ToolStep("start", fetch))
    wf.add_step(
        ParallelStep("fan", [ToolStep("p1", fetch), AgentStep("p2", Summariser())]),
    )
    wf.add_step(ToolStep("join", fetch))
    wf.add_step(
        ParallelStep("race", [ToolStep("r1", fetch)], wait_for_all=False, max_concurrency=2)
    )
    chart = check_flowchart(to_mermaid(wf))
    fan = node_id(chart, "fan (parallel)")
    assert chart.labels[fan] == f'subgraph {fan}["fan (parallel)"]'
    p1, p2 = node_id(chart, "p1"), node_id(chart, "p2")
    assert chart.parent[p1] == chart.parent[p2] == fan
    assert f"{node_id(chart, 'start')} --> {fan}" in chart.edges
    assert f"{fan} --> {node_id(chart, 'join')}" in chart.edges
    assert not any(p1 in e or p2 in e for e in chart.edges)  # branches are not chained
    race = node_id(chart, "race (parallel, first success wins, 2 at once)")
    assert chart.parent[node_id(chart, "r1")] == race


def test_map_is_a_subroutine_node() -> None:
    wf = Workflow("w")
    wf.add_step(MapStep("analyse", "files", ToolStep("lint", run_ruff).with_retry(1)))
    wf.add_step(MapStep("each", [1, 2, 3], run_ruff, max_concurrency=2))
    wf.add_step(MapStep("gen", lambda c: c["xs"], AgentStep("sum", "writer", "sum {item}")))
    chart = check_flowchart(to_mermaid(wf))
    assert chart.labels == {
        "n0": 'n0[["analyse<br/>map over files → lint (tool: run_ruff)'
        '<br/>per item: up to 2 attempts"]]',
        "n1": 'n1[["each<br/>map over 3 items → run_ruff<br/>per item: 2 at once"]]',
        "n2": 'n2[["gen<br/>map over #lt;lambda#gt;() → sum (agent: writer)"]]',
    }
    assert chart.edges == ["n0 --> n1", "n1 --> n2"]


def test_human_approval_is_a_hexagon() -> None:
    wf = Workflow("w")
    wf.add_step(ToolStep("draft", fetch))
    wf.add_step(HumanApprovalStep("review", 'Ship "v2"?\nreally', approvers=["ann", "bo"]))
    wf.add_step(HumanApprovalStep("ok", "x" * 100, timeout=3600))
    chart = check_flowchart(to_mermaid(wf))
    assert chart.labels["n1"] == (
        'n1{{"review<br/>approval: Ship #quot;v2#quot;? really<br/>approvers: ann, bo"}}'
    )
    cut = "x" * 59 + "…"
    assert chart.labels["n2"] == f'n2{{{{"ok<br/>approval: {cut}<br/>waits at most 3600s"}}}}'
    assert chart.edges == ["n0 --> n1", "n1 --> n2"]


def test_loop_subworkflow_and_router() -> None:
    inner = Workflow("inner")
    inner.add_step(ToolStep("s1", fetch), [])
    inner.add_step(ToolStep("s2", fetch), [])
    inner.add_step(ToolStep("s3", fetch), ["s1", "s2"])
    wf = Workflow("w")
    wf.add_step(LoopStep("refine", ToolStep("body", fetch), lambda c, i: i < 2, max_iterations=4))
    wf.add_step(SubWorkflowStep("sub", inner))
    wf.add_step(
        RouterStep(
            "route",
            AgentStep("classify", "classifier"),
            {"billing": ToolStep("bill", fetch), 'odd|"key"': ToolStep("other", fetch)},
        )
    )
    wf.add_step(RouterStep("pick", lambda c: "a", [ToolStep("a", fetch)]))
    chart = check_flowchart(to_mermaid(wf))

    loop = node_id(chart, "refine (loop, at most 4 iterations)")
    test, body = node_id(chart, "while"), node_id(chart, "body")
    assert chart.parent[test] == chart.parent[body] == loop
    assert f"{test} -->|repeat| {body}" in chart.edges
    assert f"{body} --> {test}" in chart.edges

    sub = node_id(chart, "sub (sub-workflow inner)")
    s1, s2, s3 = (node_id(chart, f"s{i}") for i in (1, 2, 3))
    assert chart.parent[s1] == chart.parent[s2] == chart.parent[s3] == sub
    assert {f"{s1} --> {s3}", f"{s2} --> {s3}"} <= set(chart.edges)
    assert f"{loop} --> {sub}" in chart.edges

    route = node_id(chart, "route (router)")
    classify, choice = node_id(chart, "classify"), node_id(chart, "route by its output")
    bill, other = node_id(chart, "bill"), node_id(chart, "other")
    assert {chart.parent[x] for x in (classify, choice, bill, other)} == {route}
    assert f"{classify} --> {choice}" in chart.edges
    assert f"{choice} -->|billing| {bill}" in chart.edges
    assert f'{choice} -->|"odd|#quot;key#quot;"| {other}' in chart.edges
    assert f"{sub} --> {classify}" in chart.edges  # a routing step is the router's entry
    pick = node_id(chart, "route: #lt;lambda#gt;")
    assert f"{route} --> {pick}" in chart.edges


def test_nested_composites() -> None:
    deep = ParallelStep(
        "outer",
        [
            ConditionalStep("cond", is_valid, ParallelStep("inner", [ToolStep("leaf", fetch)])),
            MapStep("m", [1], run_ruff),
        ],
    )
    chart = check_flowchart(to_mermaid(Workflow("w").add_step(deep)))
    outer, cond_group = node_id(chart, "outer ("), node_id(chart, "cond (conditional)")
    inner, leaf = node_id(chart, "inner ("), node_id(chart, "leaf")
    assert chart.parent[leaf] == inner
    assert chart.parent[inner] == cond_group
    assert chart.parent[cond_group] == outer
    assert f"{node_id(chart, 'cond<br/>')} -->|true| {inner}" in chart.edges


def test_fallback_and_compensation_are_dotted() -> None:
    wf = Workflow("w")
    wf.add_step(
        ToolStep("charge", fetch)
        .with_fallback(ToolStep("charge_backup", fetch))
        .with_compensation(ToolStep("refund", fetch))
    )
    wf.add_step(ToolStep("ship", fetch))
    chart = check_flowchart(to_mermaid(wf))
    charge, backup = node_id(chart, "charge<br/>"), node_id(chart, "charge_backup")
    refund, ship = node_id(chart, "refund"), node_id(chart, "ship")
    assert f"{charge} -.->|fallback| {backup}" in chart.edges
    assert f"{charge} -.->|compensation| {refund}" in chart.edges
    assert f"{charge} --> {ship}" in chart.edges
    assert not any(e.startswith((f"{backup} ", f"{refund} ")) for e in chart.edges)


def test_cycles_between_steps_and_workflows_terminate() -> None:
    a, b = ToolStep("a", fetch), ToolStep("b", fetch)
    a.with_fallback(b)
    b.with_fallback(a)
    wf = Workflow("w").add_step(a)
    wf.add_step(SubWorkflowStep("self", wf))
    chart = check_flowchart(to_mermaid(wf))
    assert node_id(chart, "a<br/>(drawn above)")
    assert node_id(chart, "w<br/>(recursive")


def test_unknown_dependency_is_a_dashed_node() -> None:
    wf = Workflow("w").add_step(ToolStep("a", fetch), ["ghost", "ghost"])
    chart = check_flowchart(to_mermaid(wf))
    ghost = node_id(chart, "ghost<br/>unknown step")
    assert chart.edges == [f"{ghost} --> n0"]
    assert chart.text.endswith(f"classDef missing stroke-dasharray:5 5\n    class {ghost} missing")


# --------------------------------------------------------------------------------------------
# Jupyter
# --------------------------------------------------------------------------------------------


def test_workflow_html() -> None:
    wf = Workflow("wf-<1>", "Review <script>x</script>", version="2.1")
    wf.add_step(ToolStep("a", fetch)).add_step(ToolStep('q"', fetch))
    out = workflow_html(wf)
    assert "<script>x" not in out and "Review &lt;script&gt;x&lt;/script&gt;" in out
    assert "<code>wf-&lt;1&gt;</code>" in out and "v2.1" in out and "2 steps" in out
    details = re.search(r"<details><summary>[^<]*</summary><pre>(.*?)</pre></details>", out, re.S)
    assert details and html.unescape(details.group(1)) == to_mermaid(wf)
    assert "<svg" in out and "q&quot;" in out


def test_workflow_html_is_offline_an_svg_with_one_node_per_step() -> None:
    wf = diamond()
    out = workflow_html(wf)
    # Nothing to fetch: no script, no URL at all (the inline <svg> needs no xmlns in HTML).
    assert "<script" not in out and not re.search(r"https?://", out)
    assert "cdn" not in out.lower() and MERMAID_CDN not in out
    svg = re.search(r"<svg .*?</svg>", out, re.S)
    assert svg
    nodes = re.findall(r'<g class="batten-node">\s*<title>([^\n<]*)', svg.group(0))
    assert nodes == ["a", "b", "c", "d"]  # one node per step, titled by its id
    assert svg.group(0).count("<polygon") >= 4  # an arrowhead per dependency edge


def test_to_svg_is_well_formed_and_layered() -> None:
    text = to_svg(diamond())
    root = ET.fromstring(text)  # a standalone, well-formed SVG document
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    boxes = {}
    for group in root.iterfind(".//s:g[@class='batten-node']", ns):
        title = group.find("s:title", ns)
        rect = group.find("s:rect", ns)
        assert title is not None and title.text and rect is not None
        boxes[title.text.split("\n")[0]] = (float(rect.get("x", 0)), float(rect.get("y", 0)))
    ys = {sid: y for sid, (_, y) in boxes.items()}
    # a, then b and c side by side, then d: levels go down the page.
    assert ys["a"] < ys["b"] == ys["c"] < ys["d"]
    assert boxes["b"][0] != boxes["c"][0]
    assert to_svg(diamond()) == text  # deterministic


def test_to_svg_draws_composites_as_groups_and_escapes() -> None:
    wf = Workflow("w")
    wf.add_step(ParallelStep("p<&>", [ToolStep("x", fetch), ToolStep("y", fetch)]))
    wf.add_step(ConditionalStep("c", is_valid, ToolStep("t", fetch), ToolStep("f", fetch)))
    wf.add_step(ToolStep("z", fetch).with_fallback(ToolStep("zf", fetch)))
    text = to_svg(wf)
    root = ET.fromstring(text)
    groups = [
        g.find("{http://www.w3.org/2000/svg}text")
        for g in root.iter()
        if g.get("class") == "batten-group"
    ]
    assert [g.text for g in groups if g is not None] == ["p<&> (parallel)", "c (conditional)"]
    assert "p&lt;&amp;&gt;" in text
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    for sid in ("x", "y", "t", "f", "z", "zf"):
        assert any(t and t.split("\n")[0] == sid for t in titles), sid
    assert 'stroke-dasharray="4 3"' in text  # the fallback's dotted arrow


def test_to_svg_colours_nodes_by_the_results_status() -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    wf = Workflow("w")
    wf.add_step(ToolStep("ok", fetch), [])
    wf.add_step(ParallelStep("p", [ToolStep("x", fetch), ToolStep("bad", boom)]), [])
    wf.add_step(ToolStep("after", fetch), ["p"])
    result = wf.run()
    assert result.status == WorkflowStatus.FAILED
    out = workflow_html(wf, result=result)
    by_step = {
        sid: st
        for st, sid in re.findall(
            r'<g class="batten-node" data-status="(\w+)">\s*<title>([^\n<]*)', out
        )
    }
    assert by_step == {"ok": "completed", "x": "completed", "bad": "failed", "after": "blocked"}
    assert '<g class="batten-group" data-status="failed">' in out
    failed = re.search(r'data-status="failed"><title>bad[^<]*</title><rect [^>]*>', out)
    assert failed and 'stroke="#cf222e"' in failed.group(0)  # red
    assert "run <code>" in out and "failed" in out
    uncoloured = workflow_html(wf)
    assert "data-status" not in uncoloured
    with pytest.raises(TypeError):
        to_svg(wf, result="not a result")


def test_workflow_mimebundle() -> None:
    wf = diamond()
    bundle = workflow_mimebundle(wf)
    assert set(bundle) == {"text/plain", "text/html", "text/markdown"}
    assert bundle["text/plain"] == repr(wf)
    assert bundle["text/html"] == workflow_html(wf)
    assert bundle["text/markdown"] == f"```mermaid\n{to_mermaid(wf)}\n```"
    assert "1 step<" in workflow_html(Workflow("one").add_step(ToolStep("a", fetch)))


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

FAST = RetryPolicy(initial_interval=0.001, jitter=0.0)
XSS = "<script>alert('x')</script>"


def flaky() -> None:
    raise RuntimeError(f"{XSS}\nsecond line")


def failing_run() -> Any:
    wf = Workflow("shop")
    wf.add_step(ToolStep("load", fetch), [])
    wf.add_step(ParallelStep("fan", [ToolStep("p1", fetch), ToolStep("p2", fetch)]), ["load"])
    wf.add_step(ToolStep("charge", flaky).with_retry(2, policy=FAST), ["load"])
    wf.add_step(ToolStep("ship", fetch), ["charge"])
    wf.add_step(ToolStep("maybe", fetch).add_condition(lambda c: False), ["load"])
    result = wf.run()
    assert result.status == WorkflowStatus.FAILED
    assert result.step("charge").attempts == 3
    assert result.step("ship").status == StepStatus.BLOCKED
    return result


class _Table(HTMLParser):
    """Rows of cell texts, plus the colour style of each status cell's span."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.colours: list[str] = []
        self.titles: list[str | None] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
            if tag == "td" and len(self.rows[-1]) == 4:
                self.titles.append(dict(attrs).get("title"))
        elif tag == "span" and self._cell is not None:
            self.colours.append(dict(attrs).get("style") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_result_html_table() -> None:
    result = failing_run()
    out = result_html(result)
    assert "<script" not in out
    header = out.split("<table", 1)[0]
    assert "<strong>shop</strong>" in header and f"<code>{result.run_id}</code>" in header
    assert 'color:#cf222e;font-weight:bold">failed</span>' in header
    assert _format_ms(result.total_execution_time_ms) in header
    assert "error: charge: RuntimeError: &lt;script&gt;alert(&#x27;x&#x27;)" in header

    table = _Table()
    table.feed(out)
    assert table.rows[0] == ["Step", "Status", "Attempts", "Time", "Error"]
    rows = {row[0].split(" ")[0]: row for row in table.rows[1:]}
    assert list(rows) == [s.step_id for s in result.steps]
    assert rows["load"][1:3] == ["completed", "1"]
    assert rows["fan"][0] == "fan (+2 nested)"
    assert rows["charge"][1:3] == ["failed", "3"]
    assert rows["charge"][4] == f"RuntimeError: {XSS} second line"  # unescaped by the parser
    assert rows["ship"][1:3] == ["blocked", "0"]
    assert rows["maybe"][1] == "skipped"
    for step, row in zip(result.steps, table.rows[1:], strict=True):
        assert row[3] == _format_ms(step.execution_time_ms)
        assert re.fullmatch(r"\d+\.\d ms|\d+\.\d\d s", row[3])
    colour = dict(zip(rows, table.colours, strict=True))  # the status cells' spans
    assert colour["load"] == colour["fan"] == "color:#1a7f37"
    assert colour["charge"] == "color:#cf222e"
    assert colour["ship"] == colour["maybe"] == "color:#6e7781"


def test_result_html_cuts_long_errors() -> None:
    def long_error() -> None:
        raise ValueError("é" * 500)

    result = Workflow("w").add_step(ToolStep("x", long_error)).run()
    table = _Table()
    table.feed(result_html(result))
    error = table.rows[1][4]
    assert len(error) == 200 and error.startswith("ValueError: ééé") and error.endswith("…")
    assert table.titles == [f"ValueError: {'é' * 500}"]


def test_result_html_statuses_and_output() -> None:
    result = Workflow("w").add_step(ToolStep("a", lambda: {"k": "<v>"})).run()
    out = result_html(result)
    assert 'color:#1a7f37;font-weight:bold">completed</span>' in out
    assert "error:" not in out
    assert "<summary>final output</summary><pre>{&#x27;k&#x27;: &#x27;&lt;v&gt;&#x27;}</pre>" in out
    with pytest.raises(TypeError, match=r"batten\.WorkflowResult"):
        result_html({"status": "completed"})


def test_result_waiting_for_approval_is_amber() -> None:
    wf = Workflow("appr").with_store("memory://")
    wf.add_step(ToolStep("a", fetch)).add_step(HumanApprovalStep("review", "ok?"))
    result = wf.run()
    assert result.status == WorkflowStatus.WAITING_APPROVAL
    out = result_html(result)
    assert 'color:#9a6700;font-weight:bold">waiting_approval</span>' in out
    table = _Table()
    table.feed(out)
    assert [row[:2] for row in table.rows[1:]] == [
        ["a", "completed"],
        ["review", "waiting_approval"],
    ]
    assert table.colours == ["color:#1a7f37", "color:#9a6700"]
    assert "review  waiting_approval" in result_text(result)


def test_result_text_table() -> None:
    result = failing_run()
    lines = result_text(result).split("\n")
    assert lines[0] == (
        f"workflow 'shop' · run {result.run_id} · failed · "
        f"{_format_ms(result.total_execution_time_ms)}"
    )
    assert lines[1] == f"error: charge: RuntimeError: {XSS} second line"
    header, rule, *rows = lines[2:]
    assert header.split() == ["STEP", "STATUS", "ATTEMPTS", "TIME", "ERROR"]
    starts = [header.index(h) for h in ("STATUS", "ATTEMPTS", "TIME", "ERROR")]
    assert [m.start() for m in re.finditer(r"-+", rule)] == [0, *starts]
    assert len(rows) == len(result.steps)
    by_id = {}
    for row, step in zip(rows, result.steps, strict=True):
        assert row == row.rstrip()
        bounds = [0, *starts, len(row)]
        cells = [row[a:b] for a, b in itertools.pairwise(bounds)]
        by_id[step.step_id] = [c.strip() for c in cells]
        assert by_id[step.step_id][3] == _format_ms(step.execution_time_ms)
    assert by_id["load"][:3] == ["load", "completed", "1"]
    assert by_id["fan"][0] == "fan (+2 nested)"
    assert by_id["charge"][1:3] == ["failed", "3"]
    assert by_id["charge"][4] == f"RuntimeError: {XSS} second line"
    assert by_id["ship"][1:3] == ["blocked", "0"]
    assert by_id["maybe"][1] == "skipped"
    with pytest.raises(TypeError):
        result_text(None)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0.0, "0.0 ms"),
        (12.34, "12.3 ms"),
        (999.94, "999.9 ms"),
        (1520.0, "1.52 s"),
        (59_990.0, "59.99 s"),
        (125_000.0, "2 min 5.0 s"),
        (3_720_000.0, "1 h 2 min"),
        (float("nan"), "-"),
        (-1.0, "-"),
    ],
)
def test_format_ms(ms: float, text: str) -> None:
    assert _format_ms(ms) == text


def test_to_svg_draws_every_kind_and_terminates_on_cycles() -> None:
    inner = Workflow("inner")
    inner.add_step(ToolStep("s1", fetch), [])
    inner.add_step(ToolStep("s2", fetch), ["s1"])
    wf = Workflow("w")
    wf.add_step(LoopStep("refine", ToolStep("body", fetch), lambda c, i: i < 2, max_iterations=4))
    wf.add_step(SubWorkflowStep("sub", inner))
    wf.add_step(RouterStep("route", AgentStep("classify", "c"), {"b": ToolStep("bill", fetch)}))
    wf.add_step(MapStep("m", [1], run_ruff)).add_step(HumanApprovalStep("ok", "ship?"))
    a, b = ToolStep("a", fetch), ToolStep("b", fetch)
    a.with_fallback(b)
    b.with_fallback(a)
    wf.add_step(a).add_step(SubWorkflowStep("self", wf)).add_step(ToolStep("z", fetch), ["ghost"])
    root = ET.fromstring(to_svg(wf))
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    firsts = {t.split("\n")[0] for t in titles}
    assert {"body", "s1", "s2", "classify", "bill", "m", "ok", "a", "b", "z", "ghost"} <= firsts
    assert any("(drawn above)" in t for t in titles)
    assert any("(recursive: drawn above)" in t for t in titles)
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert any(t.startswith("refine (loop") for t in texts)
    assert any(t.startswith("sub (sub-workflow inner)") for t in texts)
    # The loop's body leads back to its test: a curve bulging to the right (a back edge).
    assert sum(1 for p in root.iter("{http://www.w3.org/2000/svg}path")) >= 8
