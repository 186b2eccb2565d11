"""Ansible callback `check_report`: what a check-mode run (`ansible-playbook --check`) predicts.

Enabled by a scenario (its `callbacks_enabled` and `callback_plugins`), it does nothing in a run
without --check. In a check-mode run it counts every task result per host and lists the results
that would change something or failed (ignored failures too), and writes them as JSON (at the
start "complete": false, so an earlier run's report cannot stand in for one that died; at the end
"complete": true) to the file named by FOOTPRINT_CHECK_REPORT (whole or not at all).
tests/test_check_mode.py reads it: a check run of site.yml after the converge must predict no
change and fail nowhere (the docker scenario's check step).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ansible import context
from ansible.plugins.callback import CallbackBase

REPORT_VARIABLE = "FOOTPRINT_CHECK_REPORT"


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "check_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.results = 0
        self.changed: list[str] = []
        self.failed: list[str] = []

    @staticmethod
    def _active() -> bool:
        return bool(context.CLIARGS.get("check")) and bool(os.environ.get(REPORT_VARIABLE))

    @staticmethod
    def _name(result: Any) -> str:
        return f"{result._host.get_name()}: {result._task.get_name()}"

    def v2_runner_on_ok(self, result: Any) -> None:
        self.results += 1
        if result._result.get("changed"):
            self.changed.append(self._name(result))

    def v2_runner_on_skipped(self, result: Any) -> None:
        self.results += 1

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self.results += 1  # an ignored failure counts too: a check step must not fail at all
        self.failed.append(self._name(result) + (" (ignored)" if ignore_errors else ""))

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self.failed.append(self._name(result) + " (unreachable)")

    def _write(self, complete: bool) -> Path:
        path = Path(os.environ[REPORT_VARIABLE])
        report = {"check_mode": True, "complete": complete, "results": self.results, "changed": self.changed,
                  "failed": self.failed}
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(report, indent=1) + "\n")
        partial.replace(path)
        return path

    def v2_playbook_on_start(self, playbook: Any) -> None:
        if self._active():  # a run that dies before its end leaves "not complete", never an earlier report
            self._write(complete=False)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if not self._active():
            return
        path = self._write(complete=True)
        self._display.display(f"check_report: {self.results} task results, {len(self.changed)} would change, "
                              f"{len(self.failed)} failed -> {path}")
