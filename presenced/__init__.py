"""
presenced: a standalone web presence service for XMPP.

It tracks the presence of a server's users through a privileged XMPP
component and serves it over HTTP with the API of Openfire's Presence
Service plugin.
"""

__version__ = "0.1.0"
