"""TF Serving deployment kit: warmup requests inside an export, and server config files.

- `assets.extra/tf_serving_warmup_requests`: a TFRecord of `PredictionLog` protos
  (tensorflow-serving-api), a few requests per signature. TF Serving replays them when it
  loads a version, so the first real request does not pay for graph initialization.
- `saved_models/models.config`: one entry per model directory, paths as the
  `tensorflow/serving` container sees them (`/models/<name>`).
- `saved_models/batching.config`: server-side batching parameters (an example for CPU).
"""

from pathlib import Path

import numpy as np
import tensorflow as tf

WARMUP_FILE = "tf_serving_warmup_requests"
WARMUP_BATCHES = (1, 4)
CONTAINER_ROOT = "/models"

BATCHING_CONFIG = """\
# Server-side batching for TF Serving (pass with --enable_batching --batching_parameters_file).
# Sized for CPU serving; raise max_batch_size and num_batch_threads on bigger machines.
# Padding stays off: TF Serving would pad every dimension to the batch's largest request with
# the tensor's first element, so a clip batched with a longer one would get extra frames and
# a different answer. With batching on, send every request in the model's shape,
# frames [b, num_frames, frame_size, frame_size, 3] (assets/kmm.json), e.g. with
# kmm.serving.client.connect(url, frame_shape=(num_frames, frame_size)); requests of other
# shapes that meet in one batch fail instead of being answered wrongly.
max_batch_size { value: 32 }
batch_timeout_micros { value: 5000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 4 }
pad_variable_length_inputs: false
"""


def _example_inputs(input_names, config, batch):
    """Random frames / short texts for each named input, batch `batch`."""
    n, size = config.num_frames, config.frame_size
    frames = np.random.default_rng(batch).integers(0, 256, (batch, n, size, size, 3), dtype=np.uint8)
    examples = {
        "frames": frames,
        "jpeg_frames": np.array([[tf.io.encode_jpeg(f).numpy() for f in clip] for clip in frames], dtype=object),
        "text": np.array([b"the red circle", b""] * batch, dtype=object)[:batch],
        "labels": np.array([b"cooking", b"a dog running", b"a birthday party"], dtype=object),
    }
    return {name: examples[name] for name in input_names}


def warmup_requests(model_name, signatures, config):
    """`PredictionLog` protos: batches of 1 and 4 for each signature.

    `signatures`: `{signature name: input names}`.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    logs = []
    for signature, input_names in signatures.items():
        for batch in WARMUP_BATCHES:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            for key, value in _example_inputs(input_names, config, batch).items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup_requests(export_dir, model_name, signatures, config):
    """Writes `export_dir/assets.extra/tf_serving_warmup_requests`; returns its path."""
    extra = Path(export_dir) / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    path = extra / WARMUP_FILE
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in warmup_requests(model_name, signatures, config):
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(export_dir):
    """The `PredictionLog`s of an export (for tests and inspection)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(export_dir) / "assets.extra" / WARMUP_FILE
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]


def list_versions(model_dir):
    """Complete versions under `model_dir` (TF Serving's layout: `<model>/<integer version>/`), oldest first."""
    model_dir = Path(model_dir)
    found = [p for p in model_dir.glob("*") if p.name.isdigit() and (p / "saved_model.pb").exists()]
    return sorted(found, key=lambda p: int(p.name))


def models_config(names):
    """`models.config` text (ModelServerConfig, text format) for the model directories `names`."""
    entries = "".join(
        f"  config {{\n    name: '{name}'\n    base_path: '{CONTAINER_ROOT}/{name}'\n"
        "    model_platform: 'tensorflow'\n    model_version_policy { latest { num_versions: 1 } }\n  }\n"
        for name in names
    )
    return "model_config_list {\n" + entries + "}\n"


def write_serving_configs(base_dir):
    """(Re)writes `models.config` (every model under `base_dir`) and `batching.config`."""
    base_dir = Path(base_dir)
    names = sorted(p.name for p in base_dir.iterdir() if p.is_dir() and list_versions(p))
    (base_dir / "models.config").write_text(models_config(names))
    (base_dir / "batching.config").write_text(BATCHING_CONFIG)
    return base_dir / "models.config", base_dir / "batching.config"
