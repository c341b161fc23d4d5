"""A durable run traced to a JSON-lines file, for tests/test_telemetry.py: started (and killed
by the test while step ``c`` runs), then resumed in another process.

Usage: ``python telemetry_durable.py start|resume <db path> <spans file> <run id> <marker>``.
Each finished span is written as one JSON line (name, trace and span ids, parent, links,
attributes) by :class:`JsonLinesExporter`, a minimal ``SpanExporter``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    """Appends each span as a JSON line to ``path`` (flushed at once: the process may be
    SIGKILLed)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as f:
            for s in spans:
                ctx = s.get_span_context()
                assert ctx is not None
                f.write(
                    json.dumps(
                        {
                            "name": s.name,
                            "trace_id": f"{ctx.trace_id:032x}",
                            "span_id": f"{ctx.span_id:016x}",
                            "parent": f"{s.parent.span_id:016x}" if s.parent else None,
                            "links": [f"{ln.context.span_id:016x}" for ln in s.links],
                            "attributes": dict(s.attributes or {}),
                            "pid": os.getpid(),
                        }
                    )
                    + "\n"
                )
                f.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def main() -> None:
    mode, db, spans, run_id, marker = sys.argv[1:6]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(spans)))
    trace.set_tracer_provider(provider)

    from batten import ToolStep, Workflow

    def quick(name: str):
        def step() -> str:
            return name

        step.__name__ = name
        return step

    def slow() -> str:
        if mode == "start":
            Path(marker).write_text("in c")
            time.sleep(120)  # killed here
        return "c"

    wf = Workflow("otel_durable")
    wf.add_step(ToolStep("a", quick("a")))
    wf.add_step(ToolStep("b", quick("b")))
    wf.add_step(ToolStep("c", slow))
    wf.add_step(ToolStep("d", quick("d")))
    store = "sqlite:///" + os.path.abspath(db)
    tracer = trace.get_tracer("caller")

    async def go() -> None:
        if mode == "start":
            with tracer.start_as_current_span("caller"):
                await wf.execute(store=store, run_id=run_id)
        else:
            result = await wf.resume(run_id, store=store)
            print(result.status.value)

    asyncio.run(go())
    provider.shutdown()


if __name__ == "__main__":
    main()
