"""Moved: the event contract is ``footprint.contract``. This name stays for importers outside the app
(the ClickHouse stand-in's cluster test imports ``footprint.schema``); new code imports
``footprint.contract``."""

from footprint.contract import *  # noqa: F403
from footprint.contract import __all__ as __all__
