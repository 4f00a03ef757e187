"""Several server processes on one port (``fhir_server/workers.py``)."""

from __future__ import annotations

import selectors
import socket

from fhir_server.workers import listening_socket


def test_each_socket_gets_a_share_of_the_connections() -> None:
    first = listening_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = listening_socket("127.0.0.1", port)  # SO_REUSEPORT: the same port again
    for sock in (first, second):
        sock.listen(128)
        sock.setblocking(False)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
    accepted = {first: 0, second: 0}
    with selectors.DefaultSelector() as selector:
        for sock in (first, second):
            selector.register(sock, selectors.EVENT_READ)
        while sum(accepted.values()) < len(clients):
            for key, _ in selector.select(timeout=5):
                conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                conn.close()
                accepted[key.fileobj] += 1  # type: ignore[index]
    for sock in [first, second, *clients]:
        sock.close()
    # the kernel spreads them by address hash: both get some (all 64 on one: p = 2^-63)
    assert all(n > 0 for n in accepted.values()), accepted
