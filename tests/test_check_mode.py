"""Check mode (molecule's check step: site.yml with --check right after the converge) runs through
and predicts no change: the tests/ansible_plugins callback `check_report` wrote what it saw to
FOOTPRINT_CHECK_REPORT. Selected only where that is set (the docker scenario, conftest.py).

In `make test` the docker scenario runs no second real converge (idempotence, ~4 minutes): the
cluster scenario runs one on the same roles; the GitHub workflow runs both here. A check run sees
less than a real one (a task skipped in check mode, e.g. a command or uri, cannot report a change),
so it is the cheaper of the two checks, not a replacement for both.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.check_mode
SITE_YML_RESULTS_AT_LEAST = 300  # a one-host site.yml gives ~420 task results: the whole play ran


def test_a_check_run_after_the_converge_predicts_no_change() -> None:
    path = Path(os.environ["FOOTPRINT_CHECK_REPORT"])
    assert path.is_file(), (f"no check report at {path}: molecule's check step did not run with the check_report "
                            "callback (the scenario's callbacks_enabled and callback_plugins)")
    report = json.loads(path.read_text())
    assert report["check_mode"] is True
    assert report["complete"] is True, "the check run did not reach its end (its report is the one it began)"
    assert not report["failed"], f"check mode failed in: {report['failed']}"
    assert report["results"] >= SITE_YML_RESULTS_AT_LEAST, (
        f"only {report['results']} task results: the check run stopped early")
    assert not report["changed"], (f"right after a converge, check mode predicts {len(report['changed'])} change(s) "
                                   f"(not idempotent, or not check-mode safe): {report['changed']}")
