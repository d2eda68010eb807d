"""Which concept bank ranks paraphrased queries best: actions only, or actions + ImageNet objects.

Side by side in one run:

1. Text side. Queries that paraphrase an object, a place or an action (never the class
   name) are ranked against every concept prototype of the bank (400 actions + 1000
   objects); a query is right when one of its acceptable classes is first (R@1) or in the
   top 5. The 37 action paraphrases of `benchmarks/zero_shot.py` are also ranked among the
   400 actions alone (the figure kmm must keep: 73% R@1, 100% R@5) and in the whole bank.
   Object naming variants: `first` lemma, all `synonyms`, the first lemma + WordNet `gloss`.
2. Video side. A gallery of real footage: the sample clips and photos that packages ship
   (scikit-image) made into 3-second clips with a slow zoom; each query has one intended
   clip. Every (object weight, naming) pair ranks the gallery; R@1 and MRR. And your own
   labels: each clip classified into 9 labels in a user's words ("a cup of coffee", "city
   street traffic"), as `classify_labels` does; accuracy.

    .venv/bin/python benchmarks/concept_bank.py [--out benchmarks/results/concept_bank.json]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zero_shot import CLIP_QUERIES, PARAPHRASES  # noqa: E402

DOGS, DOMESTIC_CATS = range(151, 269), range(281, 286)
BIRDS = [*range(7, 25), *range(80, 101), *range(127, 147)]
# (query, acceptable ImageNet classes by first lemma or index): objects and places in other words.
OBJECT_QUERIES = [
    ("a kettle heating up on the hob", ["teapot"]),
    ("a harbour full of sailing boats", ["yawl", "schooner", "catamaran", "trimaran", "dock", "boathouse"]),
    ("a puppy chasing a ball in the garden", DOGS),
    ("a family pet dog asleep on the sofa", DOGS),
    ("a kitten curled up on a cushion", DOMESTIC_CATS),
    ("a small bird perched on a twig", BIRDS),
    ("a cup of strong coffee", ["espresso", "coffee mug", "cup"]),
    ("a fast red car racing down the road", ["sports car", "racer", "convertible"]),
    ("a rocket lifting off into space", ["missile", "projectile", "space shuttle"]),
    ("a man wearing a business suit and tie", ["suit", "Windsor tie", "bow tie"]),
    ("a hot pizza with melted cheese", ["pizza"]),
    ("a yellow bus taking children to class", ["school bus"]),
    ("a lighthouse standing on the coast", ["beacon"]),
    ("an old stone fortress on a hill", ["castle"]),
    ("snow-capped peaks high in the mountains", ["alp"]),
    ("waves rolling onto a sandy beach", ["seashore", "sandbar"]),
    ("lava pouring out of an erupting mountain", ["volcano"]),
    ("an old train puffing smoke", ["steam locomotive"]),
    ("a bicycle leaning against railings", ["mountain bike", "bicycle-built-for-two"]),
    ("a colourful parrot", ["macaw", "lorikeet", "sulphur-crested cockatoo", "African grey"]),
    ("jellyfish drifting in an aquarium", ["jellyfish"]),
    ("elephants walking across the savanna", ["African elephant", "Indian elephant", "tusker"]),
    ("someone working on a notebook computer", ["laptop", "notebook"]),
    ("a person texting on a smartphone", ["cellular telephone"]),
    ("a big shark swimming in the ocean", ["great white shark", "tiger shark", "hammerhead"]),
    ("a hot-air balloon floating over fields", ["balloon"]),
    ("red and green signals at a road junction", ["traffic light"]),
    ("a suspension bridge across a bay", ["suspension bridge", "steel arch bridge", "viaduct"]),
    ("a motorbike parked in a garage", ["moped", "motor scooter", "crash helmet"]),
    ("a bowl of ripe bananas", ["banana"]),
    ("a tall waterfall in the forest", ["cliff", "valley", "geyser"]),
    ("a sand spit reaching out into the sea", ["sandbar", "seashore", "promontory"]),
]

# (query, intended clip): photos that packages ship, as clips, and the sample videos.
PHOTO_CLIPS = {
    "chelsea": "chelsea.mp4",
    "coffee": "coffee.mp4",
    "rocket": "rocket.mp4",
    "astronaut": "astronaut.mp4",
    "grace_hopper": "grace_hopper.mp4",
    "stereo_motorcycle": "motorcycle.mp4",
}
MORE_CLIP_QUERIES = [
    ("a big white rabbit on a grassy hill", "bigbuckbunny.mp4"),
    ("a taxi in city traffic", "bikes.mp4"),
    ("a bicycle chained to a railing", "bikes.mp4"),
    ("a man with a bow tie in the back seat", "carphone_pristine.mp4"),
]
PHOTO_QUERIES = [
    ("an officer in a navy uniform", "grace_hopper.mp4"),
    ("a motorbike parked in a workshop", "motorcycle.mp4"),
    ("a ginger cat lying on the floor", "chelsea.mp4"),
    ("a pet tabby resting", "chelsea.mp4"),
    ("a cup of hot coffee on a saucer", "coffee.mp4"),
    ("a space rocket on its launch pad", "rocket.mp4"),
    ("a woman astronaut in a spacesuit", "astronaut.mp4"),
]
# Your own labels (`classify_labels`): one label per clip's subject, in a user's words.
OWN_LABELS = {
    "bigbuckbunny": "an animated rabbit in a meadow",
    "bikes": "city street traffic",
    "carphone": "a man talking in a car",
    "chelsea": "a cat",
    "coffee": "a cup of coffee",
    "rocket": "a space rocket",
    "astronaut": "an astronaut",
    "grace": "a navy officer",
    "motorcycle": "a motorbike",
}
NAMINGS = ("first", "synonyms", "gloss")
WEIGHTS = (0.0, 0.25, 0.5, 0.75)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _ranks(sims, acceptable):
    return np.array([min(int((sims[i] > sims[i, c]).sum()) for c in cs) + 1 for i, cs in enumerate(acceptable)])


def _row(ranks):
    return {"R@1": float((ranks <= 1).mean()), "R@5": float((ranks <= 5).mean()), "mean_rank": float(ranks.mean())}


def photo_clip(image, path, seconds=3, fps=25, size=320):
    """A slow centre zoom over a still photo, written as mp4."""
    import cv2

    from tests.data.clips import write_cv2

    image = image if image.ndim == 3 else np.stack([image] * 3, -1)
    h, w = image.shape[:2]
    frames = []
    for i in range(seconds * fps):
        zoom = 1 + 0.15 * i / (seconds * fps)
        ch, cw = int(h / zoom), int(w / zoom)
        top, left = (h - ch) // 2, (w - cw) // 2
        frames.append(cv2.resize(image[top : top + ch, left : left + cw, :3], (size, size * h // w)))
    return write_cv2(path, np.stack(frames).astype(np.uint8), fps=fps)


def _photo(skimage_data, name):
    if name == "grace_hopper":  # matplotlib's sample photo
        import matplotlib.cbook
        import matplotlib.image

        return matplotlib.image.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg"))
    image = getattr(skimage_data, name)()
    return image[0] if isinstance(image, tuple) else image


def text_side(text, labels, objects, bank_by_naming, results):
    actions_index = {name: i for i, name in enumerate(labels)}
    first = {}
    for i, cls in enumerate(objects):
        first.setdefault(cls.names[0], i)
    object_sets = []
    for query, accept in OBJECT_QUERIES:
        ids = [i for i in accept] if not accept or isinstance(accept[0], int) else [first[n] for n in accept]
        object_sets.append((query, [len(labels) + i for i in ids]))
    action_sets = [(q, [actions_index[c] for c in cs if c in actions_index]) for q, cs in PARAPHRASES]
    action_q = _unit(text(tf.constant([q for q, _ in action_sets])).numpy())
    object_q = _unit(text(tf.constant([q for q, _ in object_sets])).numpy())
    print(f"text side: {len(object_sets)} object/place paraphrases, {len(action_sets)} action paraphrases")
    print(
        f"{'naming':<10} {'objects R@1':>12} {'R@5':>6} {'actions(400) R@1':>17} {'R@5':>6} {'actions(bank) R@1':>18} {'R@5':>6}"
    )
    for naming, (action_protos, object_protos) in bank_by_naming.items():
        bank = np.concatenate([action_protos, object_protos])
        obj = _row(_ranks(object_q @ bank.T, [cs for _, cs in object_sets]))
        act400 = _row(_ranks(action_q @ action_protos.T, [cs for _, cs in action_sets]))
        act_bank = _row(_ranks(action_q @ bank.T, [cs for _, cs in action_sets]))
        results["text_side"][naming] = {"objects": obj, "actions_400": act400, "actions_bank": act_bank}
        print(f"{naming:<10} {obj['R@1']:12.3f} {obj['R@5']:6.3f} {act400['R@1']:17.3f} {act400['R@5']:6.3f} "
              f"{act_bank['R@1']:18.3f} {act_bank['R@5']:6.3f}")  # fmt: skip


def video_side(models, text, bank_by_naming, clips_dir, results):
    from kmm.data.manifest import read_manifest
    from kmm.data.samples import fetch_samples
    from kmm.serving.index import clip_frames

    skimage_data = __import__("skimage.data", fromlist=["data"])
    videos = [r.video for r in read_manifest(fetch_samples(clips_dir / "samples"))]
    videos += [photo_clip(_photo(skimage_data, name), clips_dir / clip) for name, clip in PHOTO_CLIPS.items()]
    names = [Path(v).name for v in videos]
    frames = np.stack([clip_frames(v, 32, 224) for v in videos])
    out = models.concepts.predict(frames, batch_size=2, verbose=0)
    actions, objects = out["action_probabilities"], out["object_probabilities"]
    queries = CLIP_QUERIES + MORE_CLIP_QUERIES + PHOTO_QUERIES
    clips = len(CLIP_QUERIES) + len(MORE_CLIP_QUERIES)
    # carphone_distorted is carphone_pristine, recompressed: either one is the right clip.
    same = lambda a, b: a.split("_")[0] == b.split("_")[0]  # noqa: E731
    q = _unit(text(tf.constant([t for t, _ in queries])).numpy())
    labels = list(OWN_LABELS.values())
    label_protos = _unit(
        sum(_unit(text(tf.constant([p.format(t) for t in labels])).numpy()) for p in ("{}", "a video of {}"))
    )
    truth = [list(OWN_LABELS).index(n.split("_")[0].split(".")[0]) for n in names]
    print(f"\nvideo side: {len(queries)} queries over {len(videos)} clips ({', '.join(names)})")
    print(f"{'naming':<10} {'object weight':>13} {'R@1':>6} {'MRR':>6} {'R@1 clips':>10} {'R@1 photos':>11} "
          f"{'own labels':>11}")  # fmt: skip
    for naming, (action_protos, object_protos) in bank_by_naming.items():
        for w in WEIGHTS:
            v = _unit((1 - w) * _unit(actions @ action_protos) + w * _unit(objects @ object_protos))
            sims = q @ v.T
            ranks = _ranks(sims, [[j for j, n in enumerate(names) if same(n, clip)] for _, clip in queries])
            row = {"R@1": float((ranks == 1).mean()), "MRR": float((1 / ranks).mean()),
                   "R@1_clips": float((ranks[:clips] == 1).mean()), "R@1_photos": float((ranks[clips:] == 1).mean())}  # fmt: skip
            row["own_labels_accuracy"] = float(np.mean((v @ label_protos.T).argmax(axis=1) == truth))
            results["video_side"][f"{naming} w={w}"] = row
            print(f"{naming:<10} {w:13.2f} {row['R@1']:6.3f} {row['MRR']:6.3f} {row['R@1_clips']:10.3f} "
                  f"{row['R@1_photos']:11.3f} {row['own_labels_accuracy']:11.3f}")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/concept_bank.json")
    parser.add_argument("--clips", default="/tmp/kmm-concept-bank", help="Folder for the gallery clips.")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from kmm.pretrained.concepts import OBJECT_PROMPTS, imagenet_classes, object_texts, prototypes
    from kmm.pretrained.kinetics import build_kinetics

    start = time.perf_counter()
    models, config = build_kinetics()
    text = models.text_embedder
    action_protos = models.spread.action_prototypes.numpy()
    classes = imagenet_classes()
    bank_by_naming = {}
    for naming in NAMINGS:
        objects = prototypes(models.text_embedder, [object_texts(c, naming) for c in classes], OBJECT_PROMPTS).numpy()
        bank_by_naming[naming] = (action_protos, objects)
    results = {"text_side": {}, "video_side": {}}
    text_side(text, list(config.labels), classes, bank_by_naming, results)
    Path(args.clips).mkdir(parents=True, exist_ok=True)
    video_side(models, text, bank_by_naming, Path(args.clips), results)
    results["seconds"] = time.perf_counter() - start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
