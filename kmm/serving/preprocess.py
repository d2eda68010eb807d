"""In-graph input checks and frame preprocessing for the serving signatures.

Pure TensorFlow (core ops only), so the exported graph runs in stock TF Serving. The
frames contract: uint8 `[batch, T, H, W, 3]` with any `T >= 1` (resampled uniformly to the
model's frame count, exactly like `kmm.data.sampling.uniform`) and any `H, W >= 16`
(short side resized to the model's frame size with the same filters, then
centre-cropped, like `kmm.data.video_io.fit_frame`). Bad input fails with `InvalidArgumentError` naming the
input and what was expected.

A request is a stranger's input: `Limits` caps what one request may make the graph allocate.
Every cap is checked from shapes (and from JPEG/PNG headers, before decoding) ahead of any
large allocation, and frames are resized one at a time, so the float intermediate is one
frame, not the batch.
"""

import dataclasses

import tensorflow as tf

MIN_SIDE = 16
RESIZE_PARALLELISM = 4  # frames resized at once: bounds the float32 intermediates


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps on one serving request; each violation is an `InvalidArgumentError` naming the cap.

    Attributes:
        max_batch: clips (or texts) per request.
        max_frames: frames `T` per clip.
        max_frame_pixels: height x width of one frame (raw or decoded). Default: 4K UHD.
        max_aspect: long side / short side of one frame.
        max_pixels: batch x frames x height x width of a raw `frames` request, counting the
            model's frame count if it is larger than `T` (resampling repeats frames).
        max_text_bytes: UTF-8 bytes of one text.

    Example:

        >>> Limits(max_batch=8).max_batch
        8
        >>> Limits.from_json({"max_batch": 8, "max_aspect": 3}).max_aspect
        3.0
    """

    max_batch: int = 64
    max_frames: int = 1024
    max_frame_pixels: int = 3840 * 2160
    max_aspect: float = 4.0
    max_pixels: int = 2**27
    max_text_bytes: int = 4096

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{field.name} must be a positive number; got {value!r}.")
            if field.name == "max_aspect":
                object.__setattr__(self, field.name, float(value))
            elif value != int(value):
                raise ValueError(f"Limits.{field.name} must be an integer; got {value!r}.")
            else:
                object.__setattr__(self, field.name, int(value))
        if self.max_aspect < 1:
            raise ValueError(f"Limits.max_aspect must be >= 1; got {self.max_aspect}.")

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values):
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ValueError(f"Unknown limit(s) {sorted(unknown)}; known: {known}.")
        return cls(**values)

    @classmethod
    def parse(cls, items):
        """`["max_batch=8", ...]` (the command line's `--limit`) -> `Limits`."""
        values = {}
        for item in items or ():
            name, _, value = item.partition("=")
            try:
                values[name.strip()] = float(value)
            except ValueError:
                raise ValueError(f"--limit {item!r}: expected NAME=NUMBER, e.g. max_batch=16.") from None
        return cls.from_json(values)


DEFAULT_LIMITS = Limits()


def fail_unless(condition, message, shape=None):
    """An assertion whose `InvalidArgumentError` carries `message` (and the offending shape)."""
    data = [tf.constant(message)] if shape is None else [tf.constant(message + " Received shape:"), shape]
    return tf.debugging.Assert(condition, data, summarize=8)


def check_text(text, name="text", limits=DEFAULT_LIMITS):
    """`text` must be a non-empty string vector `[batch]` within `limits` (None: no caps)."""
    expected = f"`{name}` must be a string tensor [batch] with batch >= 1"
    conditions = [(lambda s: s[0] > 0, "an empty batch")]
    if limits is not None:
        conditions.append((lambda s: s[0] <= limits.max_batch, f"a batch over the cap max_batch={limits.max_batch}"))
    asserts = _checks(text, 1, expected, conditions)
    if limits is not None:
        with tf.control_dependencies(asserts):
            longest = tf.reduce_max(tf.concat([tf.strings.length(tf.reshape(text, [-1])), [0]], 0))
        message = f"every `{name}` must be at most max_text_bytes={limits.max_text_bytes} bytes (UTF-8)."
        asserts.append(fail_unless(longest <= limits.max_text_bytes, message))
    with tf.control_dependencies(asserts):
        return _with_static_shape(tf.identity(text), [None])


def _with_static_shape(tensor, shape):
    """Declares `shape` for tracing only. (Not `tf.ensure_shape`: grappler propagates its shape
    back to the input, folds the rank checks to true, and the user gets a worse message.)"""
    tensor.set_shape(shape)
    return tensor


def _padded_shape(tensor, rank):
    """`tf.shape(tensor)` padded with zeros / cut to `rank` entries: safe to index at any rank."""
    return tf.concat([tf.shape(tensor), tf.zeros([rank], tf.int32)], 0)[:rank]


def _checks(tensor, rank, expected, conditions):
    """Asserts the rank first; each `(condition(shape), problem)` is only checked at the right rank."""
    rank_ok = tf.equal(tf.rank(tensor), rank)
    shape = _padded_shape(tensor, rank)
    asserts = [fail_unless(rank_ok, f"{expected}; got rank != {rank}.", tf.shape(tensor))]
    for condition, problem in conditions:
        ok = tf.logical_or(tf.logical_not(rank_ok), condition(shape))
        asserts.append(fail_unless(ok, f"{expected}; got {problem}.", tf.shape(tensor)))
    return asserts


def _count_caps(limits):
    """`(condition(shape), problem)` pairs on a request's batch (`shape[0]`) and frames (`shape[1]`)."""
    return [
        (lambda s: s[0] <= limits.max_batch, f"a batch over the cap max_batch={limits.max_batch}"),
        (lambda s: s[1] <= limits.max_frames, f"more frames per clip than the cap max_frames={limits.max_frames}"),
    ]


def _image_caps(limits):
    """`(condition(hw), problem)` pairs on one frame's `[h, w]` (int64) for `limits`."""
    return [
        (lambda hw: hw[0] * hw[1] <= limits.max_frame_pixels,
         f"a frame over the cap max_frame_pixels={limits.max_frame_pixels}"),
        (lambda hw: tf.cast(tf.reduce_max(hw), tf.float64) <= limits.max_aspect * tf.cast(tf.reduce_min(hw), tf.float64),
         f"a frame whose long side / short side is over the cap max_aspect={limits.max_aspect:g}"),
    ]  # fmt: skip


def _int64(shape):
    return tf.cast(shape, tf.int64)  # products of sides overflow int32


def check_frames(frames, name="frames", limits=DEFAULT_LIMITS, num_frames=1):
    """`frames` must be uint8 `[batch >= 1, T >= 1, H >= 16, W >= 16, 3]` within `limits`.

    `num_frames` (the model's frame count) enters the `max_pixels` cap: resampling a short
    clip to it repeats frames. `limits=None` checks the contract only (library use).
    """
    expected = f"`{name}` must be uint8 [batch, T, H, W, 3] with batch, T >= 1 and H, W >= {MIN_SIDE}"
    conditions = [
        (lambda s: s[0] > 0, "an empty batch"),
        (lambda s: s[1] > 0, "T = 0 frames"),
        (lambda s: tf.reduce_all(s[2:4] >= MIN_SIDE), f"a frame side below {MIN_SIDE}"),
        (lambda s: tf.equal(s[4], 3), "a channel count other than 3 (RGB)"),
    ]
    if limits is not None:
        conditions += _count_caps(limits)
        conditions += [(lambda s, cap=cap: cap(_int64(s[2:4])), problem) for cap, problem in _image_caps(limits)]
        conditions.append((
            lambda s: tf.reduce_prod(_int64(tf.stack([s[0], tf.maximum(s[1], num_frames), s[2], s[3]]))) <= limits.max_pixels,
            f"more pixels (batch x frames x height x width) than the cap max_pixels={limits.max_pixels}",
        ))  # fmt: skip
    with tf.control_dependencies(_checks(frames, 5, expected, conditions)):
        return _with_static_shape(tf.identity(frames), [None, None, None, None, 3])


def uniform_indices(length, num_frames):
    """The centre of each of `num_frames` equal segments of `[0, length)` (int32)."""
    length = tf.cast(length, tf.float64)
    centres = (tf.range(num_frames, dtype=tf.float64) + 0.5) * length / num_frames
    return tf.minimum(tf.cast(tf.floor(centres), tf.int32), tf.cast(length, tf.int32) - 1)


def resample_time(frames, num_frames):
    """`[b, T, h, w, c]` -> `[b, num_frames, h, w, c]`: uniform sampling, repeats for short clips."""
    return tf.gather(frames, uniform_indices(tf.shape(frames)[1], num_frames), axis=1)


def fit_images(images, size):
    """`[n, H, W, 3]` uint8 -> `[n, size, size, 3]` uint8: short side to `size`, centre crop."""
    shape = tf.shape(images)
    h, w = tf.cast(shape[1], tf.float64), tf.cast(shape[2], tf.float64)
    scale = size / tf.minimum(h, w)
    nh = tf.maximum(size, tf.cast(tf.round(h * scale), tf.int32))
    nw = tf.maximum(size, tf.cast(tf.round(w * scale), tf.int32))
    new_size = tf.stack([nh, nw])
    # As OpenCV in training (`fit_frame`): INTER_AREA to shrink (tf "area" is the same filter),
    # INTER_LINEAR to enlarge.
    resized = tf.cond(
        scale < 1,
        lambda: tf.image.resize(images, new_size, "area"),
        lambda: tf.image.resize(images, new_size, "bilinear"),
    )
    top, left = (nh - size) // 2, (nw - size) // 2
    cropped = resized[:, top : top + size, left : left + size, :]
    return tf.cast(tf.clip_by_value(tf.round(cropped), 0, 255), tf.uint8)


def fit_clips(frames, num_frames, size):
    """Checked `[b, T, H, W, 3]` uint8 -> `[b, num_frames, size, size, 3]` uint8 (what the model takes)."""
    frames = resample_time(frames, num_frames)
    shape = tf.shape(frames)

    def resize():  # one frame at a time: the float32 copy is a few frames, not the request
        flat = tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))
        fitted = tf.map_fn(lambda image: fit_images(image[None], size)[0], flat, parallel_iterations=RESIZE_PARALLELISM,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))  # fmt: skip
        return tf.reshape(fitted, [shape[0], num_frames, size, size, 3])

    same = tf.logical_and(tf.equal(shape[2], size), tf.equal(shape[3], size))
    out = tf.cond(same, lambda: frames, resize)
    return tf.ensure_shape(out, [None, num_frames, size, size, 3])


JPEG_MAGIC, PNG_MAGIC = b"\xff\xd8", b"\x89PNG\r\n\x1a\n"


def image_header_size(data):
    """`[h, w]` int64 of a JPEG or PNG from its header, without decoding; `[0, 0]` for other data."""
    padded = tf.strings.join([data, b"\0" * 24])  # so a short string cannot fail the slicing
    is_jpeg = tf.equal(tf.strings.substr(padded, 0, 2), JPEG_MAGIC)
    is_png = tf.equal(tf.strings.substr(padded, 0, 8), PNG_MAGIC)

    def png():  # IHDR: big-endian uint32 width, height at bytes 16 and 20
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 16, 8), tf.uint8), tf.int64)
        be = raw * tf.constant([2**24, 2**16, 2**8, 1] * 2, tf.int64)
        return tf.stack([tf.reduce_sum(be[4:]), tf.reduce_sum(be[:4])])

    return tf.case(
        [(is_jpeg, lambda: tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)), (is_png, png)],
        default=lambda: tf.zeros([2], tf.int64),
    )


def decode_clips(encoded, num_frames, size, name="jpeg_frames", limits=DEFAULT_LIMITS):
    """`[b, T]` JPEG/PNG strings -> `[b, num_frames, size, size, 3]` uint8.

    Only the `num_frames` frames the model uses are decoded, one at a time; each may have
    its own size. The size in each header is checked against `limits` before decoding.
    """
    expected = f"`{name}` must be a string tensor [batch, T] of JPEG/PNG-encoded frames with batch, T >= 1"
    conditions = [(lambda s: s[0] > 0, "an empty batch"), (lambda s: s[1] > 0, "T = 0 frames")]
    if limits is not None:
        conditions += _count_caps(limits)
    with tf.control_dependencies(_checks(encoded, 2, expected, conditions)):
        encoded = _with_static_shape(tf.identity(encoded), [None, None])
    encoded = tf.gather(encoded, uniform_indices(tf.shape(encoded)[1], num_frames), axis=1)
    caps = [] if limits is None else _image_caps(limits)

    def decode_one(data):
        hw = image_header_size(data)
        checks = [
            fail_unless(tf.reduce_all(hw > 0), f"every frame in `{name}` must be a JPEG or PNG image."),
            fail_unless(
                tf.reduce_all(hw >= MIN_SIDE), f"every frame in `{name}` must be at least {MIN_SIDE} px a side."
            ),
        ]
        checks += [fail_unless(cap(hw), f"`{name}` has {problem}.") for cap, problem in caps]
        with tf.control_dependencies(checks):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return fit_images(image[None], size)[0]

    flat = tf.reshape(encoded, [-1])
    decoded = tf.map_fn(decode_one, flat, fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8),
                        parallel_iterations=RESIZE_PARALLELISM)  # fmt: skip
    return tf.reshape(decoded, [-1, num_frames, size, size, 3])
