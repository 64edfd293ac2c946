"""
The one place where wokkel is made to work with current Twisted.

wokkel 18.0.0 was written for Twisted releases that had
C{twisted.python.compat._PY3} and C{twisted.python.constants}.  Both are
gone: C{wokkel.data_form} (and so C{wokkel.disco}) imports the former,
C{wokkel.muc} the latter.  Importing this module first puts both back, and
keeps wokkel's use of deprecated C{twisted.python.compat} aliases from
flooding the log with warnings.  Every presenced module imports wokkel
only after this one.
"""

from __future__ import annotations

import sys
import warnings

import constantly
from twisted.python import compat

if not hasattr(compat, "_PY3"):
    compat._PY3 = True  # type: ignore[attr-defined]

sys.modules.setdefault("twisted.python.constants", constantly)

warnings.filterwarnings(
    "ignore",
    category=DeprecationWarning,
    message=r"twisted\.python\.compat\.",
)
