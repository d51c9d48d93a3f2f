"""The journal: every binding `serve` has seen, so `history`, `which --at` and `annotate` can
answer for interfaces that are already gone (docs/history.md).

``binding`` (the values), ``store`` (the one module that knows SQL), ``record`` (reports ->
rows, the background writer), ``query`` (history, a moment), ``times`` (time parsers),
``annotate`` (log lines). Nothing is imported here: the command parser imports this package
for its defaults, and `vethpeer --version` must stay cheap.
"""

DEFAULT_PATH = "/var/lib/vethpeer/journal.sqlite"
ENV_VAR = "VETHPEER_JOURNAL"  # overrides the default path (the tests point it at their own file)
DEFAULT_TOLERANCE = 10.0  # seconds either side of a lifetime (see docs/history.md)
