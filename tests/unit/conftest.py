"""Unit-only fixtures: expensive servers started once per session, shared by the modules."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from s3_server import s3_environment


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, as its endpoint URL: started once for all unit tests,
    since its start (importing moto and its backends) costs more than most tests."""
    from moto.server import ThreadedMotoServer

    # The server logs every request at INFO.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty bucket of the module's own on the session's S3 server, as ``s3://<bucket>``.

    Clients find it the standard AWS way: the ``AWS_*`` variables are set for the module
    only, as the suite-wide fixture of the same name sets them.
    """
    module = request.module.__name__.rsplit(".", 1)[-1]
    bucket = "cars-" + re.sub(r"[^a-z0-9]+", "-", module.lower()).strip("-")
    with s3_environment(s3_endpoint, bucket) as uri:
        yield uri
