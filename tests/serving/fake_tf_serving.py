"""TEST FIXTURE, not a server: a stand-in for TF Serving that answers its real request formats.

No `tensorflow_model_server` binary can be installed here (FACTS.md), so kmm's REST and
gRPC clients are tested against this double. It speaks TF Serving's wire formats:
- REST: `POST /v1/models/<name>[/versions/<v>]:predict` with `{"signature_name", "inputs"}`
  (columnar) or `{"signature_name", "instances"}` (row), `{"b64": ...}` for binary strings;
  answers `{"outputs": ...}` / `{"predictions": ...}` (a bare value for single-output
  signatures) or `{"error": ...}` with HTTP 400; `GET .../metadata`.
- gRPC: `tensorflow.serving.PredictionService/Predict` and `GetModelMetadata`
  (tensorflow-serving-api protos), INVALID_ARGUMENT on bad input.
It runs the SavedModel with `tf.saved_model.load`, exactly the graph TF Serving would run.
"""

import base64
import json
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401


class ModelStore:
    """Loads every version under `saved_models/<name>/`, like TF Serving's file system source."""

    def __init__(self, base_dir):
        self.models = {}
        for model_dir in Path(base_dir).iterdir():
            versions = {int(p.name): p for p in model_dir.glob("[0-9]*") if (p / "saved_model.pb").exists()}
            if versions:
                self.models[model_dir.name] = {v: (p, tf.saved_model.load(str(p))) for v, p in versions.items()}

    def get(self, name, version=None):
        if name not in self.models:
            raise KeyError(f"Servable not found for request: Latest({name})")
        versions = self.models[name]
        version = int(version) if version else max(versions)
        if version not in versions:
            raise KeyError(f"Servable not found for request: Specific({name}, {version})")
        return version, versions[version]

    def run(self, name, version, signature, inputs, from_json=False):
        """Runs a signature. `from_json`: JSON numbers take the signature's dtype, as TF Serving's REST API does."""
        version, (_, loaded) = self.get(name, version)
        signature = signature or "serving_default"
        if signature not in loaded.signatures:
            raise ValueError(f'Serving signature name: "{signature}" not found in signature def')
        fn = loaded.signatures[signature]
        specs = fn.structured_input_signature[1]
        if from_json:
            inputs = {k: tf.constant(v, dtype=specs[k].dtype) if k in specs else v for k, v in inputs.items()}
        out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        return version, {k: v.numpy() for k, v in out.items()}

    def run_batched(self, name, version, signature, requests, pad_variable_length_inputs):
        """Runs `requests` (a list of input dicts) as one batch, the way TF Serving's batching
        session merges concurrent requests; returns one output dict per request."""
        merged = merge_batch(requests, pad_variable_length_inputs)
        _, out = self.run(name, version, signature, merged)
        sizes = np.cumsum([len(next(iter(r.values()))) for r in requests])[:-1]
        return [
            dict(zip(out, parts, strict=True))
            for parts in zip(*(np.split(v, sizes) for v in out.values()), strict=True)
        ]

    def signature_defs(self, name, version=None):
        from tensorflow.python.saved_model import loader_impl

        _, (path, _) = self.get(name, version)
        return loader_impl.parse_saved_model(str(path)).meta_graphs[0].signature_def


def merge_batch(requests, pad_variable_length_inputs):
    """TF Serving's rule for merging a batch of requests (tensorflow_serving/batching/
    batching_session.cc and batching_util.cc): each input is concatenated along the batch
    dimension; where shapes differ past it, padding off is an error, and padding on pads every
    dimension up to the batch's largest, after the data, with the tensor's *first element*."""
    merged = {}
    for key in requests[0]:
        tensors = [np.asarray(r[key]) for r in requests]
        if len({t.shape[1:] for t in tensors}) > 1:
            if not pad_variable_length_inputs:
                raise ValueError(
                    f"Tensors with name '{key}' from different tasks have different shapes and padding is turned "
                    "off. Set pad_variable_length_inputs to true, or ensure that all tensors with the same name "
                    "have equal dimensions starting with the first dim."
                )
            largest = np.max([t.shape for t in tensors], axis=0)
            tensors = [
                np.pad(t, [(0, 0)] + [(0, m - d) for m, d in zip(largest[1:], t.shape[1:], strict=True)], constant_values=t.flat[0])
                if t.dtype != object else _pad_object(t, largest)
                for t in tensors
            ]  # fmt: skip
        merged[key] = np.concatenate(tensors)
    return merged


def _pad_object(tensor, shape):
    out = np.full((len(tensor), *shape[1:]), tensor.flat[0], dtype=object)
    out[tuple(slice(0, d) for d in tensor.shape)] = tensor
    return out


def _decode(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _to_array(value):
    decoded = _decode(value)
    array = np.array(decoded, dtype=object) if _has_bytes(decoded) else np.array(decoded)
    return array


def _has_bytes(value):
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, bytes)


def _to_json(name, array):
    if array.dtype == object:
        if name.endswith("_bytes"):
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(array).tolist()
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(array).tolist()
    return array.tolist()


PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
METADATA = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?/metadata$")


def _handler(store):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            match = PREDICT.match(self.path)
            if not match:
                return self._reply(404, {"error": f"Malformed request: POST {self.path}"})
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            try:
                if "inputs" in body:
                    inputs = {k: _to_array(v) for k, v in body["inputs"].items()}
                else:  # row format: a list of {input: value} objects
                    rows = body["instances"]
                    inputs = {k: _to_array([r[k] for r in rows]) for k in rows[0]}
                _, out = store.run(match[1], match[2], body.get("signature_name"), inputs, from_json=True)
            except KeyError as e:
                return self._reply(404, {"error": str(e.args[0])})
            except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
                return self._reply(400, {"error": getattr(e, "message", str(e))})
            outputs = {k: _to_json(k, v) for k, v in out.items()}
            if "inputs" in body:
                return self._reply(200, {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs})
            n = len(next(iter(out.values())))
            rows = [{k: outputs[k][i] for k in outputs} for i in range(n)]
            return self._reply(
                200, {"predictions": [next(iter(r.values())) for r in rows] if len(outputs) == 1 else rows}
            )

        def do_GET(self):
            match = METADATA.match(self.path)
            if not match:
                return self._reply(404, {"error": f"Malformed request: GET {self.path}"})
            try:
                version, _ = store.get(match[1], match[2])
                defs = store.signature_defs(match[1], match[2])
            except KeyError as e:
                return self._reply(404, {"error": str(e.args[0])})
            from google.protobuf import json_format

            signature_def = {k: json_format.MessageToDict(v, preserving_proto_field_name=True) for k, v in defs.items()}
            return self._reply(200, {
                "model_spec": {"name": match[1], "signature_name": "", "version": str(version)},
                "metadata": {"signature_def": {"signature_def": signature_def}},
            })  # fmt: skip

    return Handler


class FakeTFServing:
    """Serves `base_dir` over REST (`self.rest_url`) and gRPC (`self.grpc_target`) on 127.0.0.1."""

    def __init__(self, base_dir, tls=None):
        """`tls=(key_pem_path, cert_pem_path)`: serve https:// and grpcs:// (for `localhost`) instead."""
        self.store = ModelStore(base_dir)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.store))
        port = self._http.server_address[1]
        self.rest_url = f"http://127.0.0.1:{port}"
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile=tls[1], keyfile=tls[0])
            self._http.socket = context.wrap_socket(self._http.socket, server_side=True)
            self.rest_url = f"https://localhost:{port}"
        self._grpc, port = _grpc_server(self.store, tls)
        self.grpc_target = f"{'grpcs' if tls else 'grpc'}://{'localhost' if tls else '127.0.0.1'}:{port}"

    def __enter__(self):
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._grpc.start()
        return self

    def __exit__(self, *exc):
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(0)


def _grpc_server(store, tls=None):
    import grpc
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            spec = request.model_spec
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            try:
                version, out = store.run(spec.name, spec.version.value or None, spec.signature_name, inputs)
            except KeyError as e:
                context.abort(grpc.StatusCode.NOT_FOUND, str(e.args[0]))
            except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, getattr(e, "message", str(e)))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = spec.name
            response.model_spec.version.value = version
            response.model_spec.signature_name = spec.signature_name or "serving_default"
            for key, value in out.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

        def GetModelMetadata(self, request, context):
            spec = request.model_spec
            try:
                defs = store.signature_defs(spec.name, spec.version.value or None)
            except KeyError as e:
                context.abort(grpc.StatusCode.NOT_FOUND, str(e.args[0]))
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, value in defs.items():
                signature_map.signature_def[key].CopyFrom(value)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = spec.name
            response.metadata["signature_def"].Pack(signature_map)
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_receive_message_length", 1 << 30)])  # fmt: skip
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    if tls:
        key, cert = (Path(p).read_bytes() for p in tls)
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    return server, port
