"""
Keep benchmark users online on the sandbox Prosody: C{USER} away with a
status, and C{FAN} subscribed to USER's presence.  Prints "ready" once
done, then stays connected until killed.

    python bench/online.py C2S_PORT USER FAN PASSWORD
"""

import sys

from twisted.internet import defer, task

from presenced.sandbox.client import SandboxClient


async def main(reactor, port, user, fan, password):
    owner = await SandboxClient(reactor, f"{user}/bench", password, int(port)).connect()
    owner.available(show="away", status="Benchmarking presence")
    follower = await SandboxClient(reactor, f"{fan}/bench", password, int(port)).connect()
    follower.available()
    follower.subscribe(user)
    for _ in range(100):
        items = await owner.rosterItems()
        if fan in items and items[fan].subscriptionFrom:
            break
        await task.deferLater(reactor, 0.05)
    else:
        raise SystemExit("the subscription did not happen")
    print("ready", flush=True)
    await defer.Deferred()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:])))
