"""The ``batten`` command: run, resume and inspect workflow files.

Runs are durable: each is recorded in a store (``--store URL``, else the ``BATTEN_STORE``
environment variable, else the SQLite file ``.batten/runs.db`` in the working directory), so a
crashed, paused or waiting run can be resumed or inspected from another shell. The workflow
file's path is recorded with the run (context metadata ``batten.source``), so ``batten resume
RUN_ID`` needs no file.

Only ``run`` creates a store: the commands that need a recorded run (``status``, ``runs``,
``resume``, ``approve``, ``reject``, ``cancel``) open a SQLite store only if its file exists,
and every "no runs" or "not found" names the store it looked in.

Exit codes: 0 the run completed; 1 it failed (failed, cancelled, compensated); 2 bad input
(a malformed file, an unknown run or input, a bad argument, a request a run's status cannot
honour, such as approving a step of a run that has ended); 3 it is waiting (for an approval,
or paused, or interrupted, for ``status``); 129, 130, 143: ``run``, ``resume``, ``approve``
or ``reject`` was stopped by SIGHUP, SIGINT (Ctrl-C) or SIGTERM (128 + the signal's number,
as a shell reports a command a signal killed): the run it was executing is recorded
``interrupted`` and the message names the ``batten resume`` command that continues it; a
second signal during that shutdown exits at once; 141 stdout's reader went away (a closed
pipe, as in ``batten runs | head -1``: the command stops quietly, as if killed by SIGPIPE; a
run it was executing still finishes and is recorded first). A closed stderr only silences
the progress and messages; the command carries on.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from batten import (
    StepStatus,
    WorkflowConfigError,
    WorkflowContext,
    WorkflowStatus,
    __version__,
)
from batten._internal.placement import RayExecutor
from batten._runtime import lifecycle
from batten._runtime.fork import forked_from
from batten._runtime.subscribers import on_loop
from batten.approval import approve, reject
from batten.cli.progress import Progress
from batten.display import result_text
from batten.durable import cancel, is_finished, stored_result
from batten.errors import (
    BattenError,
    RunLeasedError,
    RunNotFoundError,
    StoreError,
    WorkflowDefinitionError,
)
from batten.steps import Step
from batten.steps.approval import HumanApprovalStep
from batten.steps.composite import MapStep
from batten.store import open_store

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_WAITING = 0, 1, 2, 3
#: The reader of stdout went away: 128 + SIGPIPE, what a shell reports for a command that
#: SIGPIPE killed.
EXIT_BROKEN_PIPE = 141
#: A command stopped by signal N exits with 128 + N (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
EXIT_SIGNAL_BASE = 128

#: The store used when neither ``--store`` nor ``BATTEN_STORE`` names one.
DEFAULT_STORE = "sqlite:///.batten/runs.db"

#: Context metadata key holding the workflow file's absolute path.
SOURCE_KEY = "batten.source"
#: Context metadata key set (``True``) on a run ``batten run --yes`` started, so ``batten
#: status`` offers ``batten resume ... --yes`` for it as ``batten run`` itself does.
YES_KEY = "batten.yes"

_APPROVER = "batten-cli (--yes)"


def _executor_arg(text: str) -> tuple[str, str | None]:
    """``--executor``: ``ray`` or ``ray=ADDRESS`` as ``("ray", address or None)``."""
    kind, sep, address = text.partition("=")
    if kind != "ray" or (sep and not address):
        raise argparse.ArgumentTypeError(f"expected ray or ray=ADDRESS, got {text!r}")
    return kind, address or None


class UsageError(Exception):
    """Bad input from the command line (exit code 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``batten`` command with ``argv`` (default: ``sys.argv[1:]``) and returns its exit
    code (0 completed, 1 failed, 2 bad input, 3 waiting for approval, paused or (``status``)
    interrupted; 129, 130 or 143 stopped by SIGHUP, SIGINT or SIGTERM). The ``batten``
    console script exits with it.

    Raises:
        BrokenPipeError: stdout is a pipe whose reader went away; :func:`run` turns it into a
            quiet exit 141. (A closed stderr raises nothing: progress and messages stop.)
        SystemExit: from argparse, for ``--help``, ``--version`` and malformed arguments (2).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (UsageError, WorkflowDefinitionError, RunNotFoundError) as exc:
        _err(f"batten: error: {exc}")
        return EXIT_BAD_INPUT
    except (StoreError, BattenError) as exc:
        _err(f"batten: error: {type(exc).__name__}: {exc}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        # Ctrl-C outside a run's execution (which handles it, see _Shutdown): while loading
        # or reading, so no run was started or changed here.
        _err("batten: interrupted (no run was executing)")
        return EXIT_SIGNAL_BASE + signal.SIGINT


def run() -> NoReturn:
    """The console script's entry point: ``sys.exit(main())``.

    A sync step abandoned at a timeout or a cancel keeps its worker thread until it returns
    (Python cannot stop a thread) and the interpreter's exit would wait for it; its outcome is
    already recorded, so after such a run the command exits at once (``os._exit``, after
    flushing).

    When the reader of stdout goes away (``batten runs | head -1``) the command exits quietly
    with 141 (``EXIT_BROKEN_PIPE``), without a traceback.
    """
    try:
        code = main()
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        # The recipe of the Python docs (signal module, "Note on SIGPIPE"): Python flushes the
        # standard streams again at exit, which would fail again, so point them at devnull.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError):  # replaced or closed by the caller: nothing to flush
                pass
        code = EXIT_BROKEN_PIPE
    if _ABANDONED:
        os._exit(code)
    sys.exit(code)


#: Set when a step of this process's run timed out or was cancelled (see ``run``).
_ABANDONED: list[bool] = []


# -- arguments ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batten",
        description="Run, resume and inspect batten workflow files (YAML/JSON).",
        epilog="Exit codes: 0 completed, 1 failed, 2 bad input, 3 waiting for approval/paused/"
        "interrupted; 129/130/143 stopped by SIGHUP/SIGINT/SIGTERM (the run is recorded "
        "interrupted; batten resume continues it).",
    )
    parser.add_argument("--version", action="version", version=f"batten {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def store_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--store",
            metavar="URL",
            help="sqlite:///path.db, redis://host:port/db or memory:// (default: $BATTEN_STORE, "
            f"else {DEFAULT_STORE})",
        )

    def run_args(p: argparse.ArgumentParser) -> None:
        store_arg(p)
        p.add_argument(
            "--max-concurrency", type=_positive_int, metavar="N", help="steps in flight at most"
        )
        p.add_argument("--timeout", type=float, metavar="SECONDS", help="for the whole run")
        p.add_argument(
            "--executor",
            type=_executor_arg,
            metavar="ray[=ADDRESS]",
            help="run agent and tool steps as Ray tasks (batten[ray] extra): 'ray' (Ray's "
            "default cluster) or ray=auto | ray=host:port | ray=ray://host:port; overrides "
            "the file's executor",
        )
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument(
            "--yes", "-y", action="store_true", help="approve every approval step as it waits"
        )
        p.add_argument("--quiet", "-q", action="store_true", help="no progress display")

    p = sub.add_parser("run", help="run a workflow file")
    p.add_argument("file", help="the workflow file (.yaml, .yml or .json)")
    p.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an input of the workflow (repeatable)",
    )
    p.add_argument("--input-file", metavar="JSON", help="a JSON file holding an object of inputs")
    p.add_argument("--run-id", metavar="ID", help="the run's id (default: a new one)")
    run_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "resume", help="continue a run that crashed, paused, waited or was interrupted"
    )
    p.add_argument("run_id")
    p.add_argument("--file", help="the workflow file (default: the one the run recorded)")
    p.add_argument(
        "--wait",
        action="store_true",
        help="if another live process executes the run, wait for it (else: refused, exit 2)",
    )
    p.add_argument(
        "--wait-timeout", type=float, metavar="SECONDS", help="with --wait: wait at most this long"
    )
    run_args(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="a run's status and steps")
    p.add_argument("run_id")
    store_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("runs", help="list runs, newest first")
    store_arg(p)
    p.add_argument(
        "--status",
        choices=[s.value for s in WorkflowStatus],
        metavar="STATUS",
        help="only runs with this status (completed, failed, waiting_approval, paused, "
        "interrupted, ...)",
    )
    p.add_argument("--workflow", help="only runs of this workflow id")
    p.add_argument("--limit", type=_positive_int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    for name, helptext in (("approve", "approve a waiting step"), ("reject", "reject it")):
        p = sub.add_parser(name, help=f"{helptext}, then continue the run")
        p.add_argument("run_id")
        p.add_argument("step", help="the approval step's id (path)")
        p.add_argument("--comment", "-m", help="kept in the run's history")
        p.add_argument(
            "--by",
            default=os.environ.get("USER"),
            help="who decides (default $USER); the history also records the OS user and host",
        )
        p.add_argument(
            "--no-resume", action="store_true", help="record the decision only; do not continue"
        )
        run_args(p)
        p.set_defaults(func=cmd_decide, approved=name == "approve")

    p = sub.add_parser(
        "rerun", help="fork a run from a step: a new run reusing the outputs before it"
    )
    p.add_argument("run_id")
    p.add_argument("--from", dest="from_step", required=True, metavar="STEP")
    p.add_argument("--file", help="the workflow file (default: the one the run recorded)")
    run_args(p)
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("ui", help="serve the web dashboard and JSON API over a store")
    store_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    p.add_argument(
        "--token",
        metavar="[NAME:]SECRET",
        help="require this token for changes (required off 127.0.0.1); NAME is recorded as "
        "the approver (default: $BATTEN_UI_TOKEN)",
    )
    p.add_argument(
        "--trace-url", metavar="TEMPLATE", help="trace UI link, e.g. http://jaeger/trace/{trace_id}"
    )
    p.add_argument(
        "--workflow",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a workflow file POST /api/workflows/NAME/runs may start (repeatable)",
    )
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("cancel", help="cancel a run (a running process stops within 0.1 s)")
    p.add_argument("run_id")
    store_arg(p)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser(
        "graph",
        help="print a workflow file's graph as Mermaid (imports nothing unless --import)",
        description="Print a workflow file's graph as a Mermaid flowchart. By default nothing "
        "is imported: module:attribute references are shown as written.",
        epilog=_CODE_WARNING,
    )
    p.add_argument("file")
    p.add_argument("--direction", default="TD", choices=("TD", "LR", "BT", "RL"))
    p.add_argument(
        "--import",
        dest="resolve",
        action="store_true",
        help="import the file's imports and module:attribute references (runs their modules' "
        "code) and check that each resolves",
    )
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser(
        "validate",
        help="check a workflow file without running it",
        description="Check a workflow file without running its steps: exit 0 if valid, 2 with "
        "file:line: field: problem if not. It imports the file's modules (their code runs) "
        "unless --no-import.",
        epilog=_CODE_WARNING,
    )
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--no-import",
        dest="resolve",
        action="store_false",
        help="import nothing (for a file you do not trust): module:attribute references and "
        "names are checked for form only and listed as not imported",
    )
    p.set_defaults(func=cmd_validate)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _err(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        # stderr's reader went away: these lines only inform, so the command (a run, an
        # approval and its continuation) carries on; stdout failing still ends it (run()).
        pass


def _store_url(args: argparse.Namespace) -> str:
    url: str = args.store or os.environ.get("BATTEN_STORE") or DEFAULT_STORE
    return url


def _store(args: argparse.Namespace) -> Any:
    """The store ``batten run`` records its run in, created if missing."""
    url = _store_url(args)
    if url == DEFAULT_STORE:
        Path(".batten").mkdir(exist_ok=True)
    return open_store(url)


def _existing_store(args: argparse.Namespace) -> Any:
    """The store to read, or ``None`` when it is a SQLite file that does not exist: commands
    about recorded runs never create a store (opening a SQLite URL creates its file)."""
    url = _store_url(args)
    path = _sqlite_file(url)
    if path is not None and not path.is_file():
        return None
    return open_store(url)


def _sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite:///relative`` or ``sqlite:////absolute`` URL names; ``None`` for
    other URLs (in-memory SQLite included; malformed ones are left to the store to refuse)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "sqlite" or rest in ("", ":memory:", "/:memory:"):
        return None
    if not rest.startswith("/") or rest.endswith("/"):
        return None
    return Path(rest[1:])


def _where(args: argparse.Namespace, store: Any = None) -> str:
    """The store, for messages: its URL (password hidden), and for a relative SQLite path the
    file it resolves to, so "not found" in the wrong directory says which file was read."""
    url = store.url if store is not None else _store_url(args)
    path = _sqlite_file(url)
    if path is not None and not path.is_absolute():
        return f"{url} ({path.resolve()})"
    return str(url)


def _no_store(args: argparse.Namespace, run_id: str) -> NoReturn:
    raise RunNotFoundError(
        f"run {run_id} not found in {_where(args)}: no such store (nothing was created)", run_id
    )


def _run_info(args: argparse.Namespace, store: Any, run_id: str) -> Any:
    """Run ``run_id``'s record; ``RunNotFoundError`` naming the store when it has no such run."""
    if store is None:
        _no_store(args, run_id)
    try:
        return store.get_run(run_id)
    except RunNotFoundError:
        raise RunNotFoundError(f"run {run_id} not found in {_where(args, store)}", run_id) from None


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    given: dict[str, Any] = {}
    if args.input_file:
        try:
            loaded = json.loads(Path(args.input_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--input-file {args.input_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--input-file {args.input_file}: expected a JSON object")
        given.update(loaded)
    for item in args.input:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--input expects KEY=VALUE, got {item!r}")
        given[key] = value
    return given


# -- commands -------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """``batten run FILE``."""
    # batten.config imports PyYAML: only the commands that read a file import it.
    from batten.config import initial_variables, load_workflow

    workflow = load_workflow(args.file)
    variables = initial_variables(workflow, _inputs(args))
    store = _store(args)
    metadata: dict[str, Any] = {SOURCE_KEY: workflow.source}
    if args.yes:
        metadata[YES_KEY] = True
    context = WorkflowContext(workflow.workflow_id, variables=variables, metadata=metadata)
    return _drive(workflow, store, args, context=context, run_id=args.run_id)


def cmd_resume(args: argparse.Namespace) -> int:
    """``batten resume RUN_ID``: continues a run that crashed, paused, waited or failed (its
    failed steps run again). A run that completed, was cancelled or was compensated is refused
    (exit 2): there is nothing left to run."""
    store = _existing_store(args)
    info = _run_info(args, store, args.run_id)
    if info.status in (
        WorkflowStatus.COMPLETED,
        WorkflowStatus.CANCELLED,
        WorkflowStatus.COMPENSATED,
    ):
        raise UsageError(
            f"run {args.run_id} is {info.status}: it has ended, so there is nothing to resume "
            f"(batten status {args.run_id} shows it)"
        )
    workflow = _workflow_of(store, args.run_id, args.file)
    return _drive(workflow, store, args, resume=args.run_id)


def _owner_text(lease: Any) -> str:
    """``host pid N, heartbeat 1.2s ago, lease expires in 28.8s`` for a ``RunLease``."""
    import time

    return (
        f"{lease.host} pid {lease.pid}, heartbeat {lease.heartbeat_age:.1f}s ago, lease "
        f"expires in {max(0.0, lease.expires_at - time.time()):.1f}s"
    )


def _lease_json(info: Any) -> dict[str, Any] | None:
    lease = info.lease
    if lease is None:
        return None
    return {
        "host": lease.host,
        "pid": lease.pid,
        "owner_id": lease.owner_id,
        "token": lease.token,
        "heartbeat_at": lease.heartbeat_at,
        "heartbeat_age": lease.heartbeat_age,
        "expires_at": lease.expires_at,
    }


def cmd_decide(args: argparse.Namespace) -> int:
    """``batten approve|reject RUN_ID STEP``: records the decision, then resumes the run.
    Refused (exit 2, ``ApprovalError``) when the run has ended or the step is not waiting."""
    store = _existing_store(args)
    _run_info(args, store, args.run_id)
    decide = approve if args.approved else reject
    decide(args.run_id, args.step, by=args.by, comment=args.comment, store=store)
    verb = "approved" if args.approved else "rejected"
    _err(f"{verb} {args.step} of run {args.run_id}")
    if args.no_resume:
        return EXIT_OK
    workflow = _workflow_of(store, args.run_id, None)
    return _drive(workflow, store, args, resume=args.run_id, decided=True)


def cmd_status(args: argparse.Namespace) -> int:
    """``batten status RUN_ID``: exit code as the run's status (0, 1, 3 waiting, paused or
    interrupted; 0 while running). The duration of a running run is its time so far."""
    store = _existing_store(args)
    info = _run_info(args, store, args.run_id)
    history = store.history(args.run_id)
    top = {r.step_id for r in history if "/" not in r.step_id}
    result = stored_result(info, history, None, len(top))
    result = dataclasses.replace(
        result,
        steps=_shown_steps(result.steps, info.status),
        total_execution_time_ms=_seconds_of(info) * 1000.0,
    )
    decisions = _decisions(history)
    origin = forked_from(info.input)
    if args.json:
        doc = _result_json(result, info.name)
        doc["decisions"] = decisions
        doc["owner"] = _lease_json(info)
        doc["forked_from"] = origin
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(f"{info.name} ({info.workflow_id} {info.version}) run {info.run_id}: {info.status}")
        if info.lease is not None:
            print(f"executed by {_owner_text(info.lease)}")
        if origin is not None:
            print(f"forked from run {origin['run_id']} at step {origin['step']}")
        print(result_text(result))
        for d in decisions:
            print(_decision_text(d))
        resume = resume_command(info.run_id, store.url, yes=_started_with_yes(info))
        for line in _next_steps(info.run_id, info.status, info.error, history, resume, store.url):
            print(line)
    return _exit_code(info.status)


def _started_with_yes(info: Any) -> bool:
    """Whether run ``info`` (a ``RunInfo``) was started by ``batten run --yes`` (its input's
    metadata holds :data:`YES_KEY`); ``False`` for runs started otherwise or before batten
    recorded it."""
    data = info.input if isinstance(info.input, dict) else {}
    meta = data.get("metadata")
    return isinstance(meta, dict) and meta.get(YES_KEY) is True


def cmd_runs(args: argparse.Namespace) -> int:
    """``batten runs``."""
    import datetime

    store = _existing_store(args)
    runs = (
        []
        if store is None
        else store.list_runs(status=args.status, workflow_id=args.workflow, limit=args.limit)
    )
    if args.json:
        rows = [
            {
                "run_id": r.run_id,
                "workflow_id": r.workflow_id,
                "status": str(r.status),
                "created_at": r.created_at,
                "updated_at": r.updated_at,
                "error": r.error,
                "owner": _lease_json(r),
            }
            for r in runs
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not runs:
        which = f"{args.status} runs" if args.status else "runs"
        of = f" of workflow {args.workflow}" if args.workflow else ""
        missing = ": no such store yet (batten run creates it)" if store is None else ""
        print(f"no {which}{of} in {_where(args, store)}{missing}")
        return EXIT_OK
    print(f"{'RUN ID':<34} {'WORKFLOW':<20} {'STATUS':<17} {'STARTED':<19} {'SECONDS':<8} OWNER")
    for r in runs:
        started = datetime.datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M:%S")
        took = f"{_seconds_of(r):.1f}"
        owner = (
            ""
            if r.lease is None
            else f"{r.lease.host} pid {r.lease.pid} (heartbeat {r.lease.heartbeat_age:.1f}s ago)"
        )
        print(
            f"{r.run_id:<34} {r.workflow_id[:20]:<20} {r.status!s:<17} {started:<19} "
            f"{took:<8} {owner}".rstrip()
        )
    return EXIT_OK


#: Statuses of a run some process may still be executing: its duration so far is "now".
_LIVE = (WorkflowStatus.RUNNING, WorkflowStatus.PENDING, WorkflowStatus.INITIALIZING)


def _seconds_of(info: Any) -> float:
    """How long run ``info`` (a ``RunInfo``) has taken, in seconds: from its start to now while
    it is running (its record changes only when its status does), else to its last recorded
    change (its end, or where it paused, waited or was interrupted)."""
    end = time.time() if info.status in _LIVE else float(info.updated_at)
    return max(0.0, end - float(info.created_at))


def cmd_rerun(args: argparse.Namespace) -> int:
    """``batten rerun RUN_ID --from STEP``: forks the run from STEP (``Workflow.fork``) and
    runs the new run to its end; exit code as ``batten run``. An unknown STEP is refused
    (exit 2, ``UnknownStepError``) before anything is recorded."""
    from batten._runtime.fork import seed_fork

    store = _existing_store(args)
    _run_info(args, store, args.run_id)
    workflow = _workflow_of(store, args.run_id, args.file)
    new_id = seed_fork(workflow, store, args.run_id, args.from_step)
    _err(f"forked run {args.run_id} from step {args.from_step}: new run {new_id}")
    return _drive(workflow, store, args, resume=new_id)


def cmd_ui(args: argparse.Namespace) -> int:
    """``batten ui``: serves the dashboard until interrupted (``batten.ui.serve``)."""
    try:
        from batten.ui import serve
    except ImportError as exc:
        raise UsageError(
            f"batten ui needs the ui extra: pip install 'batten[ui]' ({exc})"
        ) from None
    workflows: dict[str, Any] = {}
    for item in args.workflow:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"--workflow expects NAME=FILE, got {item!r}")
        workflows[name] = str(Path(file).resolve())
    serve(
        _store(args),
        workflows=workflows,
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get("BATTEN_UI_TOKEN"),
        trace_url=args.trace_url,
    )
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    """``batten cancel RUN_ID``: a waiting, paused or interrupted run is cancelled at once, a
    running one within 0.1 s. A run that has ended is refused (exit 2): a cancel request left
    on it would stop its next ``batten resume``."""
    store = _existing_store(args)
    info = _run_info(args, store, args.run_id)
    if is_finished(info.status):
        raise UsageError(f"run {args.run_id} is {info.status}: it has ended, nothing to cancel")
    cancel(args.run_id, store=store)
    if info.status in (
        WorkflowStatus.PAUSED,
        WorkflowStatus.WAITING_APPROVAL,
        WorkflowStatus.INTERRUPTED,
    ):
        _err(f"cancelled run {args.run_id} (it was {info.status})")
    else:
        _err(f"cancel requested for run {args.run_id}")
    return EXIT_OK


_CODE_WARNING = (
    "A workflow file is code: its imports run their modules' code as the file loads, and its "
    "module:attribute references name any callable (tool: os:system runs shell commands). "
    "Import only files you trust."
)


def cmd_graph(args: argparse.Namespace) -> int:
    """``batten graph FILE [--import]``: the Mermaid flowchart on stdout; nothing of the
    file's is imported unless ``--import`` (exit 2 with ``file:line: field: problem`` if the
    file is malformed)."""
    from batten.config import read_workflow

    workflow = read_workflow(args.file, resolve=args.resolve).workflow
    print(workflow.to_mermaid(direction=args.direction))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """``batten validate FILE [--no-import] [--json]``: 0 when valid, 2 (with
    ``file:line: field: problem``) if not; with ``--no-import`` the references left unchecked
    are listed (JSON: ``"not_imported"``, a list of ``{file, line, field, reference}``)."""
    from batten.config import read_workflow

    try:
        loaded = read_workflow(args.file, resolve=args.resolve)
    except WorkflowConfigError as exc:
        if args.json:
            err = {"file": exc.file, "line": exc.line, "field": exc.field, "error": exc.reason}
            print(json.dumps({"valid": False, **err}))
        else:
            _err(f"invalid: {exc}")
        return EXIT_BAD_INPUT
    workflow, skipped = loaded.workflow, loaded.unresolved
    if args.json:
        out: dict[str, Any] = {"valid": True, "workflow_id": workflow.workflow_id}
        if not args.resolve:
            out["not_imported"] = [
                {"file": u.file, "line": u.line, "field": u.field, "reference": u.reference}
                for u in skipped
            ]
        print(json.dumps(out))
        return EXIT_OK
    n = len(workflow.steps)
    summary = f"{n} step{'s' if n != 1 else ''}, workflow '{workflow.name}'"
    if args.resolve:
        print(f"{args.file}: valid ({summary})")
        return EXIT_OK
    print(f"{args.file}: valid without importing ({summary})")
    if skipped:
        print("not imported, so not checked (validate without --no-import to check them):")
        for u in skipped:
            where = ":".join(str(p) for p in (u.file, u.line) if p is not None)
            print(f"  {where}: {u.field}: {u.reference}")
    return EXIT_OK


# -- running --------------------------------------------------------------------------------


def _workflow_of(store: Any, run_id: str, file: str | None) -> Any:
    if file is None:
        info = store.get_run(run_id)
        file = (info.input.get("metadata") or {}).get(SOURCE_KEY)
        if not file:
            raise UsageError(
                f"run {run_id} was not started by `batten run` (it records no workflow file); "
                "pass --file"
            )
    from batten.config import load_workflow

    return load_workflow(file)


class _Shutdown:
    """``batten run``'s handling of SIGTERM, SIGINT and SIGHUP while it executes a run (as
    Temporal's worker and Celery's warm shutdown: stop taking work, stop what runs, record
    where it stopped).

    The first signal asks the run to stop through an in-process ``lifecycle.Interrupt`` (no
    store round trip): nothing new starts, running async steps are cancelled and sync steps
    abandoned, and the run ends ``INTERRUPTED`` in the store; the command then exits with
    128 + the signal's number. A second signal during that shutdown exits at once
    (``os._exit``), as a second Ctrl-C does in most tools; the run then stays ``running``
    until its lease expires.

    The Python-level handler only records the signal and hands the request to the event loop
    (``call_soon_threadsafe``): run controls and stream writes are not safe inside a handler
    that can interrupt any bytecode of the main thread.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.interrupt = lifecycle.Interrupt()
        #: The first signal received, or ``None``.
        self.signum: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_first: Any = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Shutdown:
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may set handlers (main() called from a thread)
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    @property
    def exit_code(self) -> int | None:
        """128 + the signal's number once a signal came, else ``None``."""
        return None if self.signum is None else EXIT_SIGNAL_BASE + self.signum

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            try:  # unbuffered: a buffered stream may be in the middle of a write
                os.write(2, f"\nbatten: second {name}: exiting now\n".encode())
            except OSError:
                pass
            os._exit(EXIT_SIGNAL_BASE + signum)
        self.signum = signum
        reason = f"interrupted by {name}"
        loop = self.loop
        if loop is None:
            self.interrupt.reason = reason  # no run yet: the next one stops as it starts
            return
        try:
            loop.call_soon_threadsafe(self._request, reason, name)
        except RuntimeError:  # the loop has closed: the run has ended and is recorded
            pass

    def _request(self, reason: str, name: str) -> None:
        self.interrupt.request(reason)
        if self.on_first is not None:
            self.on_first(name)


def resume_command(run_id: str, store_url: str, *, yes: bool = False) -> str:
    """The ``batten resume`` command line that continues run ``run_id`` in the store at
    ``store_url`` (``--store`` only when it is not the default store; ``--yes`` when the run
    was started with it)."""
    parts = ["batten", "resume", run_id]
    if store_url != DEFAULT_STORE:
        parts += ["--store", store_url]
    if yes:
        parts.append("--yes")
    return shlex.join(parts)


def _has_approvals(steps: Sequence[Any]) -> bool:
    """True when ``steps`` or the steps nested in them hold a human approval step."""
    return any(
        isinstance(step, HumanApprovalStep) or _has_approvals(step._children()) for step in steps
    )


def _drive(
    workflow: Any,
    store: Any,
    args: argparse.Namespace,
    *,
    context: Any = None,
    run_id: str | None = None,
    resume: str | None = None,
    decided: bool = False,
) -> int:
    """Runs (or resumes) to the end, approving waits with ``--yes``; prints and exits. On
    SIGTERM, SIGINT or SIGHUP the run stops and is recorded ``interrupted`` (``_Shutdown``).
    ``decided``: the resume continues a decision just recorded (``batten approve``): when
    another process holds the run, wait for it rather than fail."""
    executor = getattr(args, "executor", None)
    if executor is not None:
        workflow.with_executor(RayExecutor(address=executor[1]))
    progress = None
    if not args.quiet:
        progress = Progress(
            [s.step_id for s in workflow.steps], title=workflow.name, stream=sys.stderr
        )

    def say(text: str) -> None:
        if progress is not None:
            progress.note(text)
        else:
            _err(text)

    current: list[str] = [resume] if resume is not None else []

    def stopping(name: str) -> None:
        which = f"run {current[0]}" if current else "the run"
        say(f"{name}: stopping {which} (a second {name} exits at once)")

    async def go(shutdown: _Shutdown) -> Any:
        shutdown.loop = asyncio.get_running_loop()
        shutdown.on_first = stopping
        interrupt = shutdown.interrupt

        def deliver(raw: tuple[str, str, int, Any]) -> None:
            if raw[0] in ("timeout", "cancelled") and not _ABANDONED:
                _ABANDONED.append(True)
            if progress is not None:
                progress.sink(*raw)

        sink = on_loop(deliver, lambda: True)
        opts: dict[str, Any] = {"timeout": args.timeout, "max_concurrency": args.max_concurrency}
        if resume is None:
            ctx, durable = lifecycle.begin_durable(workflow, context, store, run_id)
            current.append(durable.run_id)
            say(f"run {durable.run_id} of {workflow.name} (store {store.url})")
            result = await lifecycle.execute(
                workflow,
                ctx,
                on_event=sink,
                base=None,
                durable=durable,
                interrupt=interrupt,
                **opts,
            )
        else:
            say(f"resuming run {resume} of {workflow.name}")
            if progress is not None:
                progress.restore(*_restored(workflow, store.history(resume)))
            wait = bool(getattr(args, "wait", False))
            wait_timeout = getattr(args, "wait_timeout", None)
            try:
                result = await lifecycle.resume(
                    workflow,
                    resume,
                    store=store,
                    base=None,
                    on_event=sink,
                    retry_failed=True,
                    interrupt=interrupt,
                    wait=wait,
                    wait_timeout=wait_timeout,
                    **opts,
                )
            except RunLeasedError as exc:
                if not decided:
                    raise
                # Another process continues the run (another approval's continuation): only
                # one executes it. Wait for it to end; it may well have taken this decision
                # too, and then there is nothing left to run here.
                say(
                    f"run {resume} is being continued by its owner ({exc.host} pid {exc.pid}, "
                    f"heartbeat {exc.heartbeat_age:.1f}s ago); waiting for it to end"
                )
                result = await lifecycle.resume(
                    workflow,
                    resume,
                    store=store,
                    base=None,
                    on_event=sink,
                    interrupt=interrupt,
                    wait=True,
                    **opts,
                )
                if all((s.metadata or {}).get("from_store") for s in result.steps):
                    say(f"run {resume} was continued by its owner: {result.status}")
        while (
            args.yes
            and result.status == WorkflowStatus.WAITING_APPROVAL
            and interrupt.reason is None
        ):
            for path in _waiting_steps(store.history(result.run_id)):
                approve(result.run_id, path, by=_APPROVER, comment="--yes", store=store)
                say(f"approved {path} (--yes)")
            result = await lifecycle.resume(
                workflow,
                result.run_id,
                store=store,
                base=None,
                on_event=sink,
                interrupt=interrupt,
                **opts,
            )
        return result

    with _Shutdown() as shutdown:
        result = asyncio.run(go(shutdown))
        if progress is not None:
            progress.finish(str(result.status))
        _report(result, workflow, args, store)
        if shutdown.exit_code is None:
            return _exit_code(result.status)
        _err(_stopped_text(result, workflow, args, store, shutdown.signum))
        return shutdown.exit_code


def _stopped_text(
    result: Any, workflow: Any, args: argparse.Namespace, store: Any, signum: int | None
) -> str:
    """The last word of a ``batten run`` stopped by signal ``signum``: the run's id, what was
    recorded, and the command that continues it."""
    name = signal.Signals(signum).name if signum is not None else "a signal"
    run_id = result.run_id
    if result.status != WorkflowStatus.INTERRUPTED:
        return f"batten: {name}: run {run_id} had already ended {result.status}"
    text = (
        f"batten: {name}: run {run_id} stopped and is recorded interrupted; "
        f"continue it with: {resume_command(run_id, store.url, yes=args.yes)}"
    )
    if not args.yes and _has_approvals(workflow.steps):
        text += (
            " (its undecided approval steps will wait for batten approve again; add --yes to "
            "approve them as they wait)"
        )
    return text


def _report(result: Any, workflow: Any, args: argparse.Namespace, store: Any) -> None:
    payload = _result_json(result, workflow.name)
    options = getattr(workflow, "output_options", {}) or {}
    if options.get("include_agent_outputs"):
        payload["outputs"] = {s.step_id: s.output for s in result.steps}
    if options.get("save_to_file"):
        out = Path(".batten") / "results" / f"{result.run_id}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        _err(f"result saved to {out}")
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
        return
    out_stream: TextIO = sys.stdout
    status = result.status
    print(f"run {result.run_id}: {status}", file=out_stream)
    if status == WorkflowStatus.COMPLETED:
        print(_pretty(result.final_output), file=out_stream)
    elif result.error and status != WorkflowStatus.INTERRUPTED:
        print(f"error: {result.error}", file=out_stream)
    history = store.history(result.run_id)
    resume = resume_command(result.run_id, store.url, yes=args.yes)
    for line in _next_steps(result.run_id, status, result.error, history, resume, store.url):
        print(line, file=out_stream)


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _result_json(result: Any, name: str) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "workflow_id": result.workflow_id,
        "name": name,
        "status": str(result.status),
        "error": result.error,
        "final_output": result.final_output,
        "total_execution_time_ms": result.total_execution_time_ms,
        "steps": [
            {
                "step_id": s.step_id,
                "status": str(s.status),
                "attempts": s.attempts,
                "execution_time_ms": s.execution_time_ms,
                "error": s.error,
                "error_type": s.error_type,
                "traceback": s.metadata.get("traceback"),
            }
            for s in result.steps
        ],
    }


def _exit_code(status: Any) -> int:
    if status == WorkflowStatus.COMPLETED:
        return EXIT_OK
    if status in (
        WorkflowStatus.WAITING_APPROVAL,
        WorkflowStatus.PAUSED,
        WorkflowStatus.INTERRUPTED,
    ):
        return EXIT_WAITING
    if status in (WorkflowStatus.RUNNING, WorkflowStatus.PENDING, WorkflowStatus.INITIALIZING):
        return EXIT_OK
    return EXIT_FAILED


def _next_steps(
    run_id: str,
    status: Any,
    error: str | None,
    history: Sequence[Any],
    resume: str | None = None,
    store_url: str | None = None,
) -> list[str]:
    """The commands that can move run ``run_id`` on from ``status``, as lines to print
    (``resume``: the ``batten resume`` command line to offer, default without options;
    ``store_url``: the store, for the dashboard's address of a waiting approval); none
    for a run that has ended for good (completed, cancelled, compensated, or failed after its
    compensations ran). ``batten run``'s report and ``batten status`` both print these, so they
    never disagree. Approvals are offered only while the run waits for them: ``batten approve``
    continues the run, which a paused run should not do behind its owner's back and a running
    one must not do twice. With ``store_url`` (str), a run waiting for approval also gets how
    to see and approve it in the browser (``batten ui``)."""
    lines: list[str] = []
    resume = resume or f"batten resume {run_id}"
    if status == WorkflowStatus.WAITING_APPROVAL:
        for path in _waiting_steps(history):
            lines += [
                f"waiting for approval: {path}",
                f"  approve: batten approve {run_id} {path}",
                f"  reject:  batten reject {run_id} {path}",
            ]
        lines.append(_dashboard_hint(run_id, store_url))
    if status == WorkflowStatus.PAUSED:
        lines.append(f"paused; continue with: {resume}")
    elif status == WorkflowStatus.INTERRUPTED:
        reason = error or "interrupted (its process is gone)"
        lines.append(f"{reason}; continue with: {resume}")
    elif status == WorkflowStatus.FAILED and lifecycle.COMPENSATION_FAILED not in (error or ""):
        lines.append(f"after fixing the cause: {resume}")
    return lines


#: Where ``batten ui`` serves by default; ``BATTEN_UI_URL`` names another dashboard.
DASHBOARD_URL = "http://127.0.0.1:8765"


def _dashboard_hint(run_id: str, store_url: str | None) -> str:
    """The line pointing at the run's page in the dashboard: its URL when a dashboard answers
    at ``BATTEN_UI_URL`` (default :data:`DASHBOARD_URL`; a look of at most 0.3 s), else how to
    start one over this store."""
    import urllib.error
    import urllib.request

    base = (os.environ.get("BATTEN_UI_URL") or DASHBOARD_URL).rstrip("/")
    page = f"{base}/runs/{run_id}"
    try:
        with urllib.request.urlopen(f"{base}/api/openapi.json", timeout=0.3) as r:
            running = b"batten dashboard API" in r.read(4096)
    except (OSError, urllib.error.URLError, ValueError):
        running = False
    if running:
        return f"  in the browser: {page}"
    if store_url:
        path = _sqlite_file(store_url)  # relative: made absolute, so it works from anywhere
        if path is not None and not path.is_absolute():
            store_url = f"sqlite:///{path.resolve()}"
    where = f" --store {shlex.quote(store_url)}" if store_url else ""
    return f"  in the browser: batten ui{where}, then open {page}"


def _shown_steps(steps: Sequence[Any], status: Any) -> list[Any]:
    """The stored steps as ``batten status`` shows them: an approval that waits is
    ``waiting_approval`` (the store's last word on it is the ``failed`` that ended the run
    while it waited), and a step blocked behind it is ``pending``; when the run ended while
    the approval waited, the approval was never decided and shows ``cancelled``."""
    ended = is_finished(status)
    shown: list[Any] = []
    for s in steps:
        waits = s.error_type == "ApprovalPending" or s.status == StepStatus.WAITING_APPROVAL
        if waits and ended:
            s = _restated(s, StepStatus.CANCELLED, f"never decided: the run ended {status}")
        elif waits:
            s = _restated(s, StepStatus.WAITING_APPROVAL, None)
        elif s.status == StepStatus.BLOCKED and status == WorkflowStatus.WAITING_APPROVAL:
            # A run ends WAITING_APPROVAL only when nothing failed: only approvals block.
            s = _restated(s, StepStatus.PENDING, None)
        shown.append(s)
    return shown


def _restated(step: Any, status: Any, note: str | None) -> Any:
    return step.replace(
        status=status,
        output=None,
        error=note,
        error_type=None,
        exception=None,
        metadata=dict(step.metadata),
        children=None,
    )


def _decisions(history: Sequence[Any]) -> list[dict[str, Any]]:
    """The approval decisions in a run's history, oldest first: step, approved, by, comment,
    os_user, host (the last two ``None`` for decisions recorded before batten kept them) and
    at (unix seconds)."""
    found = []
    for r in history:
        detail = r.detail if isinstance(r.detail, dict) else {}
        if detail.get("decision"):
            found.append(
                {
                    "step": r.step_id,
                    "approved": bool(detail.get("approved")),
                    "by": detail.get("by"),
                    "comment": detail.get("comment"),
                    "os_user": detail.get("os_user"),
                    "host": detail.get("host"),
                    "at": r.at,
                }
            )
    return found


def _decision_text(d: dict[str, Any]) -> str:
    import datetime

    when = datetime.datetime.fromtimestamp(d["at"]).strftime("%Y-%m-%d %H:%M:%S")
    verb = "approved" if d["approved"] else "rejected"
    who = f" by {d['by']}" if d["by"] else ""
    account = f" (os user {d['os_user'] or '?'} on {d['host'] or '?'})" if d["os_user"] else ""
    said = f": {d['comment']}" if d["comment"] else ""
    return f"{d['step']} {verb}{who}{account} at {when}{said}"


def _restored(workflow: Any, history: Sequence[Any]) -> tuple[list[str], dict[str, int]]:
    """What resuming will restore, for the progress display (the engine reports nothing for
    restored steps): the paths whose last verdict in ``history`` is ``completed`` (the
    journal's rule), and each top-level map step's item count as far as the store knows it."""
    import re

    last: dict[str, str] = {}
    for r in history:
        status = str(getattr(r.status, "value", r.status))
        if status not in ("running", "retrying"):
            last[r.step_id] = status
    done = [path for path, status in last.items() if status == "completed"]
    items: dict[str, int] = {}
    for step in workflow.steps:
        if isinstance(step, MapStep):
            # A map over a plain callable names its items after itself (composite.MapStep).
            inner = step.step.step_id if isinstance(step.step, Step) else step.step_id
            pattern = re.compile(re.escape(f"{step.step_id}/{inner}[") + r"(\d+)\]")
            seen = [int(m.group(1)) for p in last if (m := pattern.fullmatch(p))]
            if seen:
                items[step.step_id] = max(seen) + 1
    return done, items


def _waiting_steps(history: Sequence[Any]) -> list[str]:
    """Paths of the approval steps whose latest history entry is a wait."""
    last: dict[str, Any] = {}
    for record in history:
        if record.error_type == "ApprovalPending":
            continue  # the run's end while the step waits, not a failure of the step
        last[record.step_id] = record
    return [p for p, r in last.items() if str(r.status) == "waiting_approval"]
