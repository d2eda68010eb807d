"""The three client backends give the same answers; REST and gRPC against the TF Serving test double."""

import numpy as np
import pytest
import tensorflow as tf

from kmm.serving.client import GrpcClient, LocalClient, RestClient, ServingError, ServingUnavailable, connect
from tests.serving.conftest import clips
from tests.serving.fake_tf_serving import FakeTFServing


@pytest.fixture(scope="module")
def server(exported):
    with FakeTFServing(exported[2]) as fake:
        yield fake


@pytest.fixture(scope="module")
def local(exported):
    return LocalClient(exported[1])


@pytest.fixture(params=["rest", "grpc"])
def remote(request, server):
    if request.param == "rest":
        return connect(server.rest_url, "tiny")
    return connect(server.grpc_target, "tiny")


def test_connect_picks_the_backend(exported, server):
    assert isinstance(connect(server.rest_url, "tiny"), RestClient)
    assert isinstance(connect(server.grpc_target, "tiny"), GrpcClient)
    client = connect(exported[2] / "tiny")  # a model directory: its newest version
    assert isinstance(client, LocalClient) and client.path.name.isdigit()


def test_remote_answers_equal_in_process(local, remote, exported):
    c = exported[0].config
    frames = clips(2, 6, 40, 48, seed=1)
    text = ["the red circle", ""]
    expected, got = local.classify(frames, text), remote.classify(frames, text)
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-5)
    np.testing.assert_allclose(got["frame_attention"], expected["frame_attention"], atol=1e-5)
    assert got["labels"].tolist() == expected["labels"].tolist()
    jpeg = [[tf.io.encode_jpeg(f).numpy() for f in clip] for clip in frames]  # binary: b64 over REST
    np.testing.assert_allclose(
        remote.classify_jpeg(jpeg, text)["scores"], local.classify_jpeg(jpeg, text)["scores"], atol=1e-5
    )
    np.testing.assert_allclose(remote.embed_video(frames), local.embed_video(frames), atol=1e-5)
    np.testing.assert_allclose(remote.embed_text(["a", "b c"]), local.embed_text(["a", "b c"]), atol=1e-5)
    found, want = remote.search(["a red circle"]), local.search(["a red circle"])
    assert found["ids"].tolist() == want["ids"].tolist() and found["ids"].shape == (1, 3)
    assert remote.signatures() == local.signatures()
    assert local.metadata()["num_frames"] == c.num_frames and remote.metadata() is None


def test_bad_input_comes_back_as_a_serving_error(remote):
    with pytest.raises(ServingError, match="frame side below 16"):
        remote.embed_video(np.zeros((1, 4, 8, 8, 3), np.uint8))


def test_rest_row_format_and_b64_as_in_the_readme(server, exported):
    """The README's curl example: `instances` rows with b64 JPEG frames."""
    import base64
    import json
    import urllib.request

    c = exported[0].config
    frame = tf.io.encode_jpeg(clips(1, 1, 64, 64)[0, 0]).numpy()
    body = {"signature_name": "classify_jpeg",
            "instances": [{"jpeg_frames": [{"b64": base64.b64encode(frame).decode()}] * 3, "text": "the red circle"}]}  # fmt: skip
    request = urllib.request.Request(f"{server.rest_url}/v1/models/tiny:predict", json.dumps(body).encode())
    with urllib.request.urlopen(request) as response:
        prediction = json.loads(response.read())["predictions"][0]
    assert len(prediction["probabilities"]) == len(c.labels) and len(prediction["labels"]) == 3


def test_unreachable_server_and_missing_model(server, tmp_path):
    with pytest.raises(ServingUnavailable, match="unreachable"):
        RestClient("http://127.0.0.1:9", "tiny", timeout=5).embed_text(["x"])
    with pytest.raises(ServingUnavailable, match="UNAVAILABLE"):
        GrpcClient("grpc://127.0.0.1:9", "tiny", timeout=5).embed_text(["x"])
    with pytest.raises(ServingUnavailable, match="not found"):
        RestClient(server.rest_url, "no-such-model").embed_text(["x"])
    with pytest.raises(ServingUnavailable, match="No kmm export"):
        LocalClient(tmp_path)


def make_tls_certificates(folder):
    """A CA and a server certificate for `localhost` signed by it (openssl), as PEM files:
    `(ca.pem, server key, server certificate)`."""
    import subprocess

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kmm test CA",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem")  # fmt: skip
    return folder / "ca.pem", folder / "server.key", folder / "server.pem"


def test_tls_grpc_and_https_with_a_given_ca(exported, local, tmp_path, monkeypatch):
    ca, key, cert = make_tls_certificates(tmp_path)
    expected = local.embed_text(["a red circle"])
    with FakeTFServing(exported[2], tls=(key, cert)) as server:
        assert server.grpc_target.startswith("grpcs://") and server.rest_url.startswith("https://")
        for target in (server.grpc_target, server.rest_url):
            client = connect(target, "tiny", ca_cert=ca)
            np.testing.assert_allclose(client.embed_text(["a red circle"]), expected, atol=1e-5)
        # The CA from the environment, as a deployment would set it.
        monkeypatch.setenv("KMM_CA_CERT", str(ca))
        np.testing.assert_allclose(connect(server.grpc_target, "tiny").embed_text(["a red circle"]), expected,
                                   atol=1e-5)  # fmt: skip
        monkeypatch.delenv("KMM_CA_CERT")
        # Without that CA the server's certificate is not trusted: no answer, over either protocol.
        with pytest.raises(ServingUnavailable):
            GrpcClient(server.grpc_target, "tiny", timeout=10).embed_text(["x"])
        with pytest.raises(ServingUnavailable):
            RestClient(server.rest_url, "tiny", timeout=10).embed_text(["x"])
    with pytest.raises(FileNotFoundError, match="no-such.pem"):
        connect("grpcs://localhost:1", "tiny", ca_cert=tmp_path / "no-such.pem")
