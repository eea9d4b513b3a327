"""Small networking helpers shared by the tests."""

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for a gloo rendezvous or a local server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
