"""Ansible callback `module_bytecode`: the test bed's task payloads carry their bytecode (the same code, less CPU).

Every task runs its module as an AnsiballZ payload: a zip of the module and its module_utils, imported on the host
straight from the zip, where Python cannot keep bytecode, so each task compiles ~50 files again (~70 ms of CPU of
~0.3 s per task here; `make test` runs ~10,000 tasks on 2 cores). Enabled by a scenario (its `callbacks_enabled`
and `callback_plugins`) with FOOTPRINT_MODULE_PYTHON naming an interpreter of the test hosts' Python version (the
Makefile finds one), it adds to each payload, beside every `.py`, the `.pyc` that interpreter compiles from the
same source (unchecked hash-based, PEP 552). Python's zip importer takes a `.pyc` whose magic number is its own and
falls back to the source otherwise, so a host of another Python version runs the payload as before. The code run
is the same; what differs is the file names it carries: a traceback from inside a module names the zip's
relative path, its `__file__` ends in `.pyc` (the journal's `MODULE=basic.pyc`), and ansible-core cannot tell
which plugin a module's deprecation warning comes from. Without the variable, or if this ansible-core builds
payloads otherwise than it knows, it does nothing (a warning for the latter). Test bed only: the roles and the
users' runs never load it.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import zipfile
from typing import Any

from ansible.executor import module_common
from ansible.plugins.callback import CallbackBase
from ansible.utils.display import Display

PYTHON_VARIABLE = "FOOTPRINT_MODULE_PYTHON"
# run by the hosts' Python: {zip path: source} on stdin -> {zip path: base64 of its .pyc} on stdout
COMPILE = r"""
import base64, importlib.util, json, sys
from importlib._bootstrap_external import _code_to_hash_pyc
out = {}
for name, source in json.load(sys.stdin).items():
    data = source.encode("utf-8", "surrogateescape")
    try:
        code = compile(data, name, "exec", dont_inherit=True)
    except SyntaxError:
        continue
    out[name] = base64.b64encode(_code_to_hash_pyc(code, importlib.util.source_hash(data), False)).decode()
json.dump(out, sys.stdout)
"""
display = Display()


def compiled(python: str, sources: dict[str, bytes]) -> dict[str, bytes]:
    """The ``.pyc`` of each source as ``python`` compiles it (an empty dict if it cannot)."""
    payload = json.dumps({name: data.decode("utf-8", "surrogateescape") for name, data in sources.items()})
    try:
        res = subprocess.run([python, "-c", COMPILE], input=payload, capture_output=True, text=True, timeout=120,
                             check=True)
        return {name: base64.b64decode(pyc) for name, pyc in json.loads(res.stdout).items()}
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        display.warning(f"module_bytecode: {python} did not compile the payload ({exc}); it runs from source")
        return {}


class _BytecodeZipFile(zipfile.ZipFile):
    """A payload's zip: each ``.py`` written is compiled when it is closed, its ``.pyc`` added beside it."""

    python = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sources: dict[str, tuple[bytes, Any]] = {}

    def writestr(self, zinfo_or_arcname: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        super().writestr(zinfo_or_arcname, data, *args, **kwargs)
        info = zinfo_or_arcname if isinstance(zinfo_or_arcname, zipfile.ZipInfo) else None
        name = info.filename if info else str(zinfo_or_arcname)
        if name.endswith(".py"):
            body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            self._sources[name] = (body, info.date_time if info else (1980, 1, 1, 0, 0, 0))

    def close(self) -> None:
        if self.mode == "w" and self._sources and self.fp is not None:
            sources, self._sources = self._sources, {}
            for name, pyc in compiled(self.python, {n: body for n, (body, _) in sources.items()}).items():
                info = zipfile.ZipInfo(name[:-3] + ".pyc", date_time=sources[name][1])
                info.compress_type = self.compression
                super().writestr(info, pyc)
        super().close()


class _ZipModule:
    """What module_common sees as ``zipfile``: the standard module, with the payload's ZipFile above."""

    ZipFile = _BytecodeZipFile

    def __getattr__(self, name: str) -> Any:
        return getattr(zipfile, name)


def _install(python: str) -> None:
    if getattr(module_common, "zipfile", None) is not zipfile or not hasattr(module_common, "_make_zinfo"):
        display.warning("module_bytecode: this ansible-core builds its payloads otherwise; the modules run from source")
        return
    _BytecodeZipFile.python = python
    module_common.zipfile = _ZipModule()  # type: ignore[assignment]


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "module_bytecode"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        python = os.environ.get(PYTHON_VARIABLE, "")
        if python:  # the payloads are built in the workers this process forks later: patched for them too
            _install(python)
