"""A zero-shot concept bank: Kinetics-400 actions (I3D) and ImageNet-1k objects (EfficientNet-Lite0)
in MiniLM's text space.

Each concept gets a text prototype: the MiniLM embeddings of its names in a few prompts,
averaged and normalized. A clip's embedding mixes the two kinds:

    e = normalize((1 - w) * normalize(p_actions @ A) + w * normalize(p_objects @ O))

where `p_actions` is I3D's softmax, `p_objects` the frames' ImageNet softmax averaged over
the clip, and `w` = `OBJECT_WEIGHT`. A text's embedding is its normalized MiniLM embedding,
so "a kettle on a stove" finds a clip whose frames show a teapot and "someone strumming a
guitar" one that I3D calls "playing guitar". `benchmarks/concept_bank.py` chose `w`, the
prompts and how ImageNet's names are used (BENCHMARKS.md, "Concept bank").

ImageNet's class names are WordNet synsets (`imagenet1k_labels.tsv`, from timm's
`imagenet_synset_to_lemma.txt` and `..._definition.txt`): synonym lists ("tabby, tabby cat")
and glosses ("a cat with a grey or tawny coat mottled with black"). The gloss carries what
a breed or a model is ("breed of toy dogs ..."), which a query rarely names.

Example:

    >>> classes = imagenet_classes()
    >>> classes[967].names[0], classes[281].names
    ('espresso', ('tabby', 'tabby cat'))
"""

import dataclasses
from pathlib import Path

import keras
import tensorflow as tf

ACTION, OBJECT = "action", "object"
KINDS = (ACTION, OBJECT)
IMAGENET_LABELS = Path(__file__).resolve().parent.parent / "encoders" / "imagenet1k_labels.tsv"
ACTION_PROMPTS = ("{}", "a video of {}")  # the best of four sets on paraphrased actions (benchmarks/zero_shot.py)
OBJECT_PROMPTS = ("{}", "a video of {}")
OBJECT_NAMING = "gloss"  # Choose from ['first', 'synonyms', 'gloss'] (object_texts)
OBJECT_WEIGHT = 0.25  # w above: 0 = actions only
# `classify_labels`: probabilities = softmax(cosine / LABEL_TEMPERATURE) over the user's labels.
LABEL_TEMPERATURE = 0.05


@dataclasses.dataclass(frozen=True)
class ImageNetClass:
    wnid: str
    names: tuple  # WordNet lemmas, the most common first
    gloss: str


def imagenet_classes(path=IMAGENET_LABELS):
    """The 1000 ImageNet-1k classes in logit order (EfficientNet-Lite0's head)."""
    classes = []
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            wnid, names, gloss = line.split("\t")
            classes.append(ImageNetClass(wnid, tuple(n.strip() for n in names.split(",")), gloss))
    if len(classes) != 1000:
        raise ValueError(f"{path}: expected 1000 ImageNet classes, found {len(classes)}.")
    return classes


def object_texts(cls, naming=OBJECT_NAMING):
    """The texts whose embeddings make an object's prototype.

    `naming`: `first` (the first lemma), `synonyms` (every lemma), `gloss` (the first
    lemma with its WordNet definition).
    """
    if naming == "first":
        return [cls.names[0]]
    if naming == "synonyms":
        return list(cls.names)
    if naming == "gloss":
        return [cls.names[0], f"{cls.names[0]}, {cls.gloss}"]
    raise ValueError(f"Unknown object naming {naming!r}; choose from ['first', 'synonyms', 'gloss'].")


def _normalize(x):
    return tf.math.l2_normalize(x, axis=-1)


def prototypes(text_encoder, texts_per_concept, prompts, batch_size=128):
    """`(concepts, dim)` unit-norm prototypes: each concept's texts in each prompt, embedded, averaged.

    Texts are embedded shortest first, so a batch pads to lengths alike (glosses are long).
    """
    texts, owners = [], []
    for i, names in enumerate(texts_per_concept):
        for name in names:
            for prompt in prompts:
                texts.append(prompt.format(name))
                owners.append(i)
    order = sorted(range(len(texts)), key=lambda j: len(texts[j]))
    texts, owners = [texts[j] for j in order], [owners[j] for j in order]
    embedded = tf.concat(
        [_normalize(text_encoder(tf.constant(texts[i : i + batch_size]))) for i in range(0, len(texts), batch_size)],
        axis=0,
    )  # (texts, dim)
    summed = tf.math.unsorted_segment_mean(embedded, tf.constant(owners), num_segments=len(texts_per_concept))
    return _normalize(summed)


@keras.saving.register_keras_serializable(package="kmm")
class ConceptSpread(keras.layers.Layer):
    """Action and object probabilities -> one unit-norm embedding in the text space.

    `normalize((1 - w) normalize(p_a @ A) + w normalize(p_o @ O))`, with the prototypes
    `A` `(actions, dim)` and `O` `(objects, dim)` as non-trainable weights (set them with
    `assign`). With `object_weight=0` it is the action-only spread.

    Args:
        num_actions: int. Number of action classes.
        num_objects: int. Number of object classes.
        dim: int. Dimension of the text space.
        object_weight: float. `w`. Defaults to `OBJECT_WEIGHT`.

    Call arguments:
        inputs: list `[action_probabilities (b, num_actions), object_probabilities (b, num_objects)]`.
    """

    def __init__(self, num_actions, num_objects, dim, object_weight=OBJECT_WEIGHT, **kwargs):
        super().__init__(**kwargs)
        self.num_actions, self.num_objects, self.dim = num_actions, num_objects, dim
        self.object_weight = float(object_weight)
        self.action_prototypes = self.add_weight(shape=(num_actions, dim), initializer="zeros", trainable=False,
                                                 name="action_prototypes")  # fmt: skip
        self.object_prototypes = self.add_weight(shape=(num_objects, dim), initializer="zeros", trainable=False,
                                                 name="object_prototypes")  # fmt: skip

    def call(self, inputs):
        actions, objects = inputs
        ops = keras.ops
        a = ops.normalize(ops.matmul(actions, self.action_prototypes), axis=-1)  # (b, dim)
        o = ops.normalize(ops.matmul(objects, self.object_prototypes), axis=-1)  # (b, dim)
        return ops.normalize((1.0 - self.object_weight) * a + self.object_weight * o, axis=-1)

    def get_config(self):
        return {**super().get_config(), "num_actions": self.num_actions, "num_objects": self.num_objects,
                "dim": self.dim, "object_weight": self.object_weight}  # fmt: skip
