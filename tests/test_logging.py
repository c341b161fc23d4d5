"""Engine events reach Python's ``logging`` under the ``batten`` logger."""

from __future__ import annotations

import logging
import time

import pytest
from batten import ToolStep, Workflow


def test_a_finished_run_is_logged_at_debug_under_the_batten_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="batten")
    wf = Workflow("logged", "logged")
    wf.add_step(ToolStep("one", lambda: 1))
    result = wf.run()
    finished = [
        r for r in caplog.records if r.name.startswith("batten") and "finished" in r.message
    ]
    assert finished, [r.getMessage() for r in caplog.records]
    assert result.run_id in finished[-1].getMessage()
    assert finished[-1].levelno == logging.DEBUG


def test_an_abandoned_sync_step_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="batten")
    wf = Workflow("abandon", "abandon")
    wf.add_step(ToolStep("stuck", lambda: time.sleep(0.3)).with_timeout(0.05))
    wf.run()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "stuck" in r.message]
    assert warnings, [r.getMessage() for r in caplog.records]
    assert warnings[0].name.startswith("batten.")
