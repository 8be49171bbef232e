"""A real S3-speaking server on 127.0.0.1 for tests: moto's server mode, spoken to by s3fs over HTTP.

Nothing is patched: dpedkit finds the server through the usual AWS configuration (``AWS_ENDPOINT_URL`` and keys in
the environment), as a user's own setup would; subprocesses and cluster nodes started with :func:`s3_env` find it
too.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

KEY, SECRET = "dpedkit-test-key", "dpedkit-test-secret-0123456789"  # the server accepts any; never in a dataset


@contextmanager
def s3_server(bucket: str = "bucket") -> Iterator[dict[str, str]]:
    """Start the server (a free port), create ``bucket``; yields the environment variables that reach it."""
    import s3fs
    from moto import server as server_mod  # a dev dependency: missing means a broken set-up, not a skip

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            # moto keeps its buckets per process, not per server: a server started earlier in this process (another
            # test module on the same xdist worker) left its own; start from none
            urllib.request.urlopen(urllib.request.Request(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", method="POST"))
            # fsspec keeps one S3 client per set of arguments, made with the endpoint of its day: this server's port
            # is new, so a client cached by an earlier server's test would call a closed port
            s3fs.S3FileSystem.clear_instance_cache()
            client().mkdir(bucket)
            yield env
    finally:
        server.stop()


def client():  # noqa: ANN201 - an s3fs.S3FileSystem
    """A fresh s3fs client (no listing cache) configured from the environment, as dpedkit's is."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)
