"""
The C{twistd presenced} plugin.
"""

from twisted.application.service import ServiceMaker

presenced = ServiceMaker(
    "presenced",
    "presenced.tap",
    "Serve XMPP presence over HTTP (Openfire Presence Service API).",
    "presenced",
)
