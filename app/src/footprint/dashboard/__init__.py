"""The web dashboard (``footprint dashboard``): the stats of both stores on one page.

``app.py`` serves the page, the login and the JSON the page draws; the statistics themselves are
``footprint.stats`` (the same queries as ``footprint stats``); ``health.py`` reads the pipeline's health
from Prometheus for the Health panel. The page's files are in ``static/``;
the charting library is vendored into ``footprint/static/vendor/`` at build time (app/vendor.json).
"""
