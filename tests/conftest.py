import os
import pathlib

import pytest

# Trials and tests share 2 cores: one torch thread each keeps them from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """../shared/data beside the checkout; tests that need it skip cleanly without it."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture
def s3_root(monkeypatch):
    """An s3:// results root on a local moto S3 server (loopback only), with its endpoint and
    fake credentials in the environment, which Ray workers inherit."""
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    import pyarrow.fs as pafs
    fs = pafs.S3FileSystem(endpoint_override=f"http://{host}:{port}", region="us-east-1",
                           allow_bucket_creation=True)
    fs.create_dir("results-bucket")
    yield "s3://results-bucket/lab"
    server.stop()
