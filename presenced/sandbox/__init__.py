"""
A throwaway XMPP world on loopback: a real Prosody server and real XMPP
clients, for the demo, the integration tests and the benchmark.
"""
