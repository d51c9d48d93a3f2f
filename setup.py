"""Only so that the man page generator (argparse-manpage, run at build time from
pyproject.toml's cmdclass) can import vethpeer.cli from this source tree."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from setuptools import setup  # noqa: E402

setup()
