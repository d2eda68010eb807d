"""Zero-shot text -> video with the pretrained Kinetics model: which design ranks best.

Two measurements, side by side in one run:

1. Text side, paraphrased queries: each query describes a Kinetics-400 action in other
   words ("someone strumming an acoustic guitar" -> playing guitar). Ranks the 400 class
   prototypes for each prompt-template set; R@1, R@5, mean rank. A video that I3D gives
   one class is ranked by exactly this.
2. Video side, the real sample clips: each query has one intended clip. Compares ways of
   turning class probabilities into a video embedding: the full probability spread
   (`normalize(p @ prototypes)`, kmm's choice), the top-5 classes only, and matching in
   class space (the text's softmax over prototypes against the video's probabilities).

    .venv/bin/python benchmarks/zero_shot.py [--out benchmarks/results/zero_shot.json]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

# (query, acceptable Kinetics classes): paraphrases, not the class names.
PARAPHRASES = [
    ("someone strumming an acoustic guitar on stage", ["playing guitar", "strumming guitar", "tapping guitar"]),
    ("a dog being taken for a stroll in the park", ["walking the dog"]),
    ("a person typing on a laptop", ["using computer"]),
    ("a man cycling along a mountain trail", ["riding mountain bike", "riding a bike"]),
    ("dancers performing on pointe in tutus", ["dancing ballet"]),
    ("a woman making a scarf with wool and needles", ["knitting"]),
    ("a man lifting a barbell while lying on his back", ["bench pressing"]),
    ("a kid cleaning their teeth in the bathroom", ["brushing teeth"]),
    ("riding waves on a board in the ocean", ["surfing water"]),
    ("a toddler moving on hands and knees across the floor", ["crawling baby"]),
    ("frying an egg in a pan", ["cooking egg"]),
    ("a couple kissing", ["kissing"]),
    ("a presenter explaining tomorrow's rain on television", ["presenting weather forecast"]),
    ("a man trimming his facial hair with a razor", ["trimming or shaving beard"]),
    ("a couple doing a latin dance", ["salsa dancing", "tango dancing"]),
    ("someone doing press-ups on the floor", ["push up"]),
    ("a girl jumping over a rope again and again", ["skipping rope"]),
    ("a woman stretching in poses on a mat", ["yoga"]),
    ("a man cleaning plates in the kitchen sink", ["washing dishes"]),
    ("an old man looking through the daily paper", ["reading newspaper"]),
    ("a rider on horseback crossing a field", ["riding or walking with horse"]),
    ("someone scaling a steep cliff face", ["rock climbing"]),
    ("a boy kicking a football across a field", ["kicking soccer ball"]),
    ("a basketball player slamming the ball through the hoop", ["dunking basketball"]),
    ("a musician hitting a drum kit", ["playing drums"]),
    ("gliding on skates across a frozen rink", ["ice skating"]),
    ("a barber cutting a customer's hair", ["getting a haircut"]),
    ("someone licking a cone of gelato", ["eating ice cream"]),
    ("a man at the wheel of a car on the highway", ["driving car"]),
    ("a woman running along the beach for exercise", ["jogging"]),
    ("a child flying a kite in the wind", ["flying kite"]),
    ("splitting logs with an axe", ["chopping wood"]),
    ("friends dealing a hand of poker at a table", ["playing cards"]),
    ("someone singing into a microphone", ["singing"]),
    ("a person swimming laps on their back", ["swimming backstroke"]),
    ("a teenager doing tricks on a skateboard", ["skateboarding"]),
    ("a crowd clapping their hands", ["applauding"]),
]

PROMPT_SETS = {
    "name only": ("{}",),
    "a video of {}": ("a video of {}",),
    "name + a video of (kmm)": ("{}", "a video of {}"),
    "name + video + person": ("{}", "a video of {}", "a video of a person {}"),
}

# (query, intended clip among the sample videos)
CLIP_QUERIES = [
    ("a bird pecking at seeds on the ground", "bigbuckbunny.mp4"),
    ("an animated animal in a meadow", "bigbuckbunny.mp4"),
    ("cars and bikes on a city street", "bikes.mp4"),
    ("a man walking past parked cars", "bikes.mp4"),
    ("a man talking on the phone in a car", "carphone_pristine.mp4"),
    ("someone chatting while riding in a vehicle", "carphone_pristine.mp4"),
]


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def text_side(text, labels, results):
    index = {name: i for i, name in enumerate(labels)}
    usable = [(q, [index[c] for c in cs if c in index]) for q, cs in PARAPHRASES]
    missing = [q for q, cs in usable if not cs]
    usable = [(q, cs) for q, cs in usable if cs]
    queries = _unit(text(tf.constant([q for q, _ in usable])).numpy())
    print(f"text side: {len(usable)} paraphrased queries over {len(labels)} classes "
          f"({len(missing)} dropped: their class is not in Kinetics-400)")  # fmt: skip
    print(f"{'prompts':<30} {'R@1':>6} {'R@5':>6} {'mean rank':>10}")
    from kmm.pretrained.kinetics import class_prototypes

    for name, prompts in PROMPT_SETS.items():
        prototypes = class_prototypes(text, labels, prompts).numpy()
        sims = queries @ prototypes.T  # (q, 400)
        ranks = np.array([min(int((sims[i] > sims[i, c]).sum()) for c in cs) + 1 for i, (_, cs) in enumerate(usable)])
        row = {"R@1": float((ranks <= 1).mean()), "R@5": float((ranks <= 5).mean()), "mean_rank": float(ranks.mean())}
        results["text_side"][name] = row
        print(f"{name:<30} {row['R@1']:6.3f} {row['R@5']:6.3f} {row['mean_rank']:10.1f}")


def video_side(models, config, text, results):
    from kmm.data.manifest import read_manifest
    from kmm.data.samples import fetch_samples
    from kmm.serving.index import clip_frames

    rows = read_manifest(fetch_samples())
    names = [Path(r.video).name for r in rows]
    frames = np.stack([clip_frames(r.video, config.num_frames, config.frame_size) for r in rows])
    probs = models.video_probabilities.predict(frames, batch_size=2, verbose=0)  # (clips, 400)
    prototypes = models.spread.action_prototypes.numpy()
    queries = _unit(text(tf.constant([q for q, _ in CLIP_QUERIES])).numpy())
    top5 = np.where(probs >= np.sort(probs, axis=1)[:, -5:-4], probs, 0.0)
    designs = {
        "probability spread (kmm)": (queries, _unit(probs @ prototypes)),
        "top-5 classes spread": (queries, _unit(top5 @ prototypes)),
        "class space, text softmax t=0.05": (_unit(tf.nn.softmax(queries @ prototypes.T / 0.05).numpy()), _unit(probs)),
    }
    print(f"\nvideo side: {len(CLIP_QUERIES)} queries over the {len(rows)} sample clips")
    print(f"{'design':<36} {'R@1':>6} {'MRR':>6}")
    for name, (q, v) in designs.items():
        sims = q @ v.T
        ranks = np.array([int((sims[i] > sims[i, names.index(clip)]).sum()) + 1 for i, (_, clip) in
                          enumerate(CLIP_QUERIES)])  # fmt: skip
        row = {"R@1": float((ranks == 1).mean()), "MRR": float((1 / ranks).mean())}
        results["video_side"][name] = row
        print(f"{name:<36} {row['R@1']:6.3f} {row['MRR']:6.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/zero_shot.json")
    args = parser.parse_args()
    from kmm.pretrained.kinetics import build_kinetics

    start = time.perf_counter()
    models, config = build_kinetics()
    results = {"text_side": {}, "video_side": {}}
    text_side(models.text_embedder, list(config.labels), results)
    video_side(models, config, models.text_embedder, results)
    results["seconds"] = time.perf_counter() - start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
