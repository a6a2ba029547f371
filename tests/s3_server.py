"""The environment of a test's bucket on moto's S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def s3_environment(endpoint: str, bucket: str) -> Iterator[str]:
    """``s3://<bucket>``, created on the S3 server at ``endpoint``, with ``AWS_*`` set meanwhile.

    Clients find the server the standard AWS way, so pyarrow here, the jobs run as
    subprocesses and the Ray they start all reach it.
    """
    import pyarrow.fs

    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            env.setenv(name, value)
        # FileSystem.from_uri reads AWS_ENDPOINT_URL; the S3FileSystem constructor does not.
        filesystem, path = pyarrow.fs.FileSystem.from_uri(
            f"s3://{bucket}?allow_bucket_creation=true"
        )
        filesystem.create_dir(path)
        yield f"s3://{bucket}"
