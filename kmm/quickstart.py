"""`kmm quickstart`: the whole pipeline offline on kmm-shapes, in minutes on 2 CPU cores.

encoders -> kmm-shapes -> stage-1 features -> fit -> evaluate -> TF Serving export, then the
pretrained Kinetics model (real videos, no training) exported next to it -> summary.
"""

import contextlib
import dataclasses
import json
import time
from pathlib import Path

from kmm import paths, run_folder, specs
from kmm.data.synth import generate, vocab
from kmm.models.config import PRESETS
from kmm.serving.from_run import export_run
from kmm.train.run import train_and_evaluate
from kmm.train.trainer import TrainConfig

SPLITS = generate.SPLITS  # test_real: the test split over held-out real imagery


def default_run_dir():
    return paths.kmm_home() / "runs" / "quickstart"


def features_dir(config, data_size="default", run_dir=None):
    """Where the quickstart caches the stage-1 features of `config` (next to its run folder)."""
    encoder = config.frame_encoder.split("//")[-1]
    return Path(run_dir or default_run_dir()).parent / f"features-{data_size}-{encoder}-{config.frame_convention}"


# 22 epochs fit the quickstart's time budget on 2 CPU cores, at twice the default learning
# rate after a one-epoch warm-up (a high rate from the first step collapses the retrieval
# embeddings). Half of the training clips play backwards, with the reversed label and
# caption (kmm-shapes knows both), and 16 clips of each batch of 64 play both ways, so that
# "moves left" and "moves right" of the same objects are each other's negatives.
QUICKSTART_TRAINING = TrainConfig(
    epochs=22, learning_rate=2e-3, warmup_epochs=1, time_reversal=vocab.TIME_REVERSAL, reversal_pairs=16
)


def run_quickstart(run_dir=None, data_size="default", model_preset="default", train_config=QUICKSTART_TRAINING,
                   overrides=None, verbose=1, log=print, export_dir=specs.EXPORT_BASE, export_name=specs.MODEL_NAME,
                   pretrained=True):  # fmt: skip
    """Runs the whole quickstart; returns `(results, timings, export_path)`.

    `pretrained`: also export the zero-shot Kinetics model (`kmm.pretrained.kinetics`) into
    `export_dir/kinetics/`, with the real sample videos as its search gallery.
    """
    from kmm.encoders.builtin import build_encoders

    run_dir = Path(run_dir or default_run_dir())
    timings, start = {}, time.perf_counter()
    config = PRESETS[model_preset].replace(labels=tuple(generate.label_names()), **(overrides or {}))
    numbers = {"encoders": 1, "data": 2, "features": 3, "training": 4, "evaluation": 5, "export": 6, "kinetics": 7}

    @contextlib.contextmanager
    def phase(name, message):
        log(f"[{numbers[name]}/7] {message}")
        t0 = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - t0, 1)
        log(f"      done in {timings[name]:.1f} s")

    with phase("encoders", "Offline encoders (built once, then cached)"):
        handles = [config.text_encoder, config.frame_encoder]
        build_encoders([h.removeprefix("kmm://") for h in handles if h.startswith("kmm://")], progress=verbose > 0)

    with phase("data", f"kmm-shapes ({data_size}): coloured shapes doing 8 actions, with captions"):
        synth = generate.PRESETS[data_size]
        manifest = generate.generate(generate.default_dir(data_size), synth, progress=verbose > 0)

    # Captions that say the same thing in other words are one group: not each other's negatives.
    _, _, _, results = train_and_evaluate(
        manifest, config, train_config, run_dir, list(SPLITS), feature_dir=features_dir(config, data_size, run_dir),
        reverse_caption=vocab.reverse_caption if train_config.time_reversal else None,
        caption_group=vocab.caption_content, verbose=verbose, phase=phase, log=log,
    )  # fmt: skip

    with phase("export", f"Export for TF Serving into {export_dir}/{export_name}/ (test split as the search gallery)"):
        export_path = export_run(run_dir, export_dir, export_name, "test", towers_dir=run_dir / run_folder.TOWERS)

    kinetics_path = None
    if pretrained:
        with phase("kinetics", f"Pretrained Kinetics model for real videos (I3D + MiniLM, no training) into "
                               f"{export_dir}/kinetics/"):  # fmt: skip
            kinetics_path = _export_kinetics(export_dir, verbose)
    timings["total"] = round(time.perf_counter() - start, 1)
    (run_dir / "quickstart.json").write_text(
        json.dumps(
            {
                "timings_s": timings, "data": dataclasses.asdict(synth), "train": dataclasses.asdict(train_config),
                "export": str(export_path), "kinetics_export": str(kinetics_path) if kinetics_path else None,
            },
            indent=2,
        )
    )  # fmt: skip
    return results, timings, export_path


def _export_kinetics(export_dir, verbose):
    from kmm.pretrained.kinetics import export_kinetics, sample_gallery

    videos, ids, captions = sample_gallery()
    return export_kinetics(export_dir, videos=videos, ids=ids, captions=captions, progress=verbose > 0)
