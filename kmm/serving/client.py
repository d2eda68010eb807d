"""One client interface to a kmm export, three backends: in-process, TF Serving REST, TF Serving gRPC.

`connect(target)` picks the backend: a local export directory (a version, or the model
directory: its newest version), `http(s)://host:port` (REST) or `grpc://host:port`.
All backends take and return numpy arrays keyed by the signature's input/output names.

Example:

    >>> client = connect("saved_models/kmm")  # doctest: +SKIP
    >>> client.classify(frames, ["the red circle"])["labels"][0]  # doctest: +SKIP
    array([b'red circle moving left', ...])
    >>> client.search(["a blue square growing"])["ids"]  # doctest: +SKIP
"""

import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from kmm import specs

DEFAULT_MODEL_NAME = "kmm"
CA_CERT_ENV = "KMM_CA_CERT"  # a PEM file of CA certificates for https:// and grpcs:// (default: the system's)


def _ca_cert(ca_cert):
    """The CA bundle to trust: `ca_cert`, else `$KMM_CA_CERT`, else None (the system's roots)."""
    path = ca_cert or os.environ.get(CA_CERT_ENV) or None
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"CA certificate {path}: no such file (from --ca-cert or ${CA_CERT_ENV}).")
    return path


class ServingError(RuntimeError):
    """The model rejected a request (bad input) or failed; the message is the server's."""


class ServingUnavailable(ServingError):
    """The model or server cannot be reached."""


def fit_request(frames, num_frames, frame_size):
    """uint8 `[b, T, H, W, 3]` -> `[b, num_frames, frame_size, frame_size, 3]`, as the graph would.

    Same frames (`kmm.data.sampling.uniform`) and same resize and crop
    (`kmm.data.video_io.fit_frame`) as the serving graph, done before sending, so every
    request has the model's shape: what TF Serving's batching needs to batch requests
    without padding them (see `saved_models/batching.config`).
    """
    from kmm.data.sampling import uniform
    from kmm.data.video_io import fit_frame

    frames = np.asarray(frames, np.uint8)
    if frames.ndim != 5 or frames.shape[1] < 1:
        raise ValueError(f"frames: expected uint8 [batch, T, H, W, 3]; got shape {frames.shape}.")
    picked = frames[:, uniform(frames.shape[1], num_frames)]
    if picked.shape[2:4] == (frame_size, frame_size):
        return picked
    return np.stack([[fit_frame(f, frame_size) for f in clip] for clip in picked])


def _as_text(values):
    return np.asarray([v.encode() if isinstance(v, str) else v for v in values], dtype=object)


class Client:
    """Common interface. Subclasses implement `predict` and `signatures`.

    `frame_shape`: None (send frames as given; the graph fits them) or
    `(num_frames, frame_size)`: fit them here first (`fit_request`), for TF Serving with
    batching on.
    """

    name = "client"
    frame_shape = None

    def _frames(self, frames):
        frames = np.asarray(frames, np.uint8)
        return frames if self.frame_shape is None else fit_request(frames, *self.frame_shape)

    def predict(self, signature, inputs):
        """Runs `signature` on `{input name: array}`; returns `{output name: np.ndarray}`."""
        raise NotImplementedError

    def signatures(self):
        """`{signature: {"inputs": {name: dtype}, "outputs": {name: dtype}}}`."""
        raise NotImplementedError

    def metadata(self):
        """`assets/kmm.json` when the export is readable from here, else None."""
        return None

    def classify(self, frames, text=None):
        """uint8 frames `[b, T, H, W, 3]` (+ optional texts) -> probabilities, labels, scores, frame_attention."""
        frames = self._frames(frames)
        text = [""] * len(frames) if text is None else text
        return self.predict("serving_default", {"frames": frames, "text": _as_text(text)})

    def classify_jpeg(self, jpeg_frames, text=None):
        """Encoded frames `[b, T]` (bytes; JPEG or PNG) -> as `classify`."""
        text = [""] * len(jpeg_frames) if text is None else text
        encoded = np.asarray(jpeg_frames, dtype=object)
        if self.frame_shape is not None and encoded.ndim == 2 and encoded.shape[1]:
            from kmm.data.sampling import uniform

            encoded = encoded[:, uniform(encoded.shape[1], self.frame_shape[0])]
        return self.predict("classify_jpeg", {"jpeg_frames": encoded, "text": _as_text(text)})

    def embed_video(self, frames):
        return self.predict("embed_video", {"frames": self._frames(frames)})[specs.EMBEDDING]

    def embed_text(self, texts):
        return self.predict("embed_text", {"text": _as_text(texts)})[specs.EMBEDDING]

    def search(self, texts):
        """Queries -> `{"ids": [b, k] bytes, "scores": [b, k]}` over the export's gallery."""
        return self.predict("search", {"text": _as_text(texts)})

    def classify_labels(self, frames, labels):
        """uint8 frames `[b, T, H, W, 3]` and your own label texts `[n]` -> `probabilities` `[b, n]`,
        `similarities` (the Kinetics export's zero-shot `classify_labels`)."""
        return self.predict("classify_labels", {"frames": self._frames(frames), "labels": _as_text(labels)})


class LocalClient(Client):
    """Runs an export in this process with `tf.saved_model.load`."""

    name = "local"

    def __init__(self, export_dir):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops)

        from kmm.serving.export import list_versions

        path = Path(export_dir).expanduser()
        if not (path / "saved_model.pb").exists():
            versions = list_versions(path) if path.is_dir() else []
            if not versions:
                raise ServingUnavailable(f"No kmm export at {path} (no saved_model.pb, no numbered versions).")
            path = versions[-1]
        self.path = path
        self._tf = tf
        self._loaded = tf.saved_model.load(str(path))  # keep a reference: signatures need it alive

    def predict(self, signature, inputs):
        tf = self._tf
        if signature not in self._loaded.signatures:
            raise ServingError(f"{self.path}: no signature {signature!r}; it has {sorted(self._loaded.signatures)}.")
        fn = self._loaded.signatures[signature]
        try:
            out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
            raise ServingError(_first_line(e)) from e
        return {k: v.numpy() for k, v in out.items()}

    def signatures(self):
        result = {}
        for name, fn in self._loaded.signatures.items():
            inputs = fn.structured_input_signature[1]
            result[name] = {
                "inputs": {k: spec.dtype.name for k, spec in inputs.items()},
                "outputs": {k: spec.dtype.name for k, spec in fn.structured_outputs.items()},
            }
        return result

    def metadata(self):
        from kmm.serving.export import read_metadata

        return read_metadata(self.path)


_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[", "File ", "Traceback")


def _first_line(error):
    """The informative line of a TensorFlow error (the assertion or op message, not the trace)."""
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in text.splitlines()]
    useful = [line for line in lines if line and not line.startswith(_NOISE)]
    return useful[0] if useful else text.strip() or repr(error)


def _json_value(array):
    """numpy -> JSON for TF Serving's REST API (bytes as `{"b64": ...}` unless valid UTF-8 text)."""
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind in "SU":

        def encode(v):
            if isinstance(v, str):
                return v
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(v).decode("ascii")}

        return np.vectorize(encode, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def _from_json(value):
    array = np.asarray(value)
    if array.dtype.kind == "U":
        return np.vectorize(lambda s: s.encode(), otypes=[object])(array)
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    return array


class RestClient(Client):
    """TF Serving's REST API: `POST /v1/models/<name>[/versions/<v>]:predict` (columnar `inputs`)."""

    name = "rest"

    def __init__(self, url, model_name=DEFAULT_MODEL_NAME, version=None, timeout=60, ca_cert=None):
        import ssl

        self.url = url.rstrip("/")
        self.model_name, self.version, self.timeout = model_name, version, timeout
        self.base = f"{self.url}/v1/models/{model_name}" + (f"/versions/{version}" if version else "")
        cafile = _ca_cert(ca_cert) if self.url.startswith("https://") else None
        self._context = ssl.create_default_context(cafile=cafile) if cafile else None

    def _request(self, url, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except json.JSONDecodeError:
                pass
            if e.code == 404:
                raise ServingUnavailable(f"TF Serving at {self.url}: {detail}") from e
            raise ServingError(detail) from e
        except (urllib.error.URLError, OSError) as e:
            raise ServingUnavailable(f"TF Serving at {self.url} is unreachable: {getattr(e, 'reason', e)}") from e

    def predict(self, signature, inputs):
        body = {"signature_name": signature, "inputs": {k: _json_value(v) for k, v in inputs.items()}}
        outputs = self._request(f"{self.base}:predict", body)["outputs"]
        if not isinstance(outputs, dict):  # a single-output signature answers with the bare value
            outputs = {specs.EMBEDDING: outputs}
        return {k: _from_json(v) for k, v in outputs.items()}

    def signatures(self):
        meta = self._request(f"{self.base}/metadata")
        defs = meta["metadata"]["signature_def"]["signature_def"]
        return {
            name: {
                "inputs": {k: _rest_dtype(v["dtype"]) for k, v in d.get("inputs", {}).items()},
                "outputs": {k: _rest_dtype(v["dtype"]) for k, v in d.get("outputs", {}).items()},
            }
            for name, d in defs.items()
            if not name.startswith("__")
        }


def _rest_dtype(name):
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    return tf.dtypes.as_dtype(types_pb2.DataType.Value(name)).name  # "DT_FLOAT" -> "float32"


class GrpcClient(Client):
    """TF Serving's gRPC API (`PredictionService/Predict`, tensorflow-serving-api stubs)."""

    name = "grpc"

    def __init__(self, target, model_name=DEFAULT_MODEL_NAME, version=None, timeout=60, ca_cert=None):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        secure = target.startswith("grpcs://")
        self.target = target.removeprefix("grpcs://").removeprefix("grpc://")
        self.model_name, self.version, self.timeout = model_name, version, timeout
        self._grpc = grpc
        options = [("grpc.max_receive_message_length", 1 << 30), ("grpc.max_send_message_length", 1 << 30)]
        if secure:  # TLS: the server's certificate checked against the given CA, else the system's roots
            cafile = _ca_cert(ca_cert)
            roots = Path(cafile).read_bytes() if cafile else None
            self._channel = grpc.secure_channel(self.target, grpc.ssl_channel_credentials(roots), options=options)
        else:
            self._channel = grpc.insecure_channel(self.target, options=options)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def _spec(self, signature=""):
        from tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=self.model_name, signature_name=signature)
        if self.version:
            spec.version.value = int(self.version)
        return spec

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            code = e.code()
            if code in (self._grpc.StatusCode.UNAVAILABLE, self._grpc.StatusCode.NOT_FOUND,
                        self._grpc.StatusCode.DEADLINE_EXCEEDED):  # fmt: skip
                raise ServingUnavailable(f"TF Serving at {self.target}: {code.name}: {e.details()}") from e
            raise ServingError(e.details()) from e

    def predict(self, signature, inputs):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(model_spec=self._spec(signature))
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self._stub.Predict, request)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def signatures(self):
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._spec(), metadata_field=["signature_def"]
        )
        response = self._call(self._stub.GetModelMetadata, request)
        defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(defs)
        return {
            name: {
                "inputs": {k: _dtype_name(v.dtype) for k, v in d.inputs.items()},
                "outputs": {k: _dtype_name(v.dtype) for k, v in d.outputs.items()},
            }
            for name, d in defs.signature_def.items()
            if not name.startswith("__")
        }


def _dtype_name(enum_value):
    import tensorflow as tf

    return tf.dtypes.as_dtype(enum_value).name


def connect(target, model_name=DEFAULT_MODEL_NAME, version=None, frame_shape=None, ca_cert=None):
    """A client for `target`: a local export path, `http(s)://host:port` (REST) or
    `grpc://host:port` (gRPC; `grpcs://host:port` over TLS).

    `frame_shape=(num_frames, frame_size)` (from the export's `assets/kmm.json`) fits frames
    before sending them: needed with TF Serving's batching on (`saved_models/batching.config`).
    `ca_cert`: a PEM file of the CA that signed the server's certificate, for `https://` and
    `grpcs://` (default: `$KMM_CA_CERT`, else the system's roots).

    Example:

        >>> client = connect("grpcs://serving.example.com:443", "kinetics", ca_cert="ca.pem")  # doctest: +SKIP
    """
    target = str(target)
    if target.startswith(("http://", "https://")):
        client = RestClient(target, model_name, version, ca_cert=ca_cert)
    elif target.startswith(("grpc://", "grpcs://")):
        client = GrpcClient(target, model_name, version, ca_cert=ca_cert)
    else:
        path = Path(target).expanduser()
        if version and (path / str(version)).is_dir():
            path = path / str(version)
        client = LocalClient(path)
    client.frame_shape = None if frame_shape is None else (int(frame_shape[0]), int(frame_shape[1]))
    return client
