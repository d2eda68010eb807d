"""In-graph input checks and frame preprocessing for the serving signatures.

Pure TensorFlow (core ops only), so the exported graph runs in stock TF Serving. The
frames contract: uint8 `[batch, T, H, W, 3]` with any `T >= 1` (resampled uniformly to the
model's frame count, exactly like `kmm.data.sampling.uniform`) and any `H, W >= 16`
(short side resized to the model's frame size with the same filters, then
centre-cropped, like `kmm.data.video_io.fit_frame`). Bad input fails with `InvalidArgumentError` naming the
input and what was expected.
"""

import tensorflow as tf

MIN_SIDE = 16


def fail_unless(condition, message, shape=None):
    """An assertion whose `InvalidArgumentError` carries `message` (and the offending shape)."""
    data = [tf.constant(message)] if shape is None else [tf.constant(message + " Received shape:"), shape]
    return tf.debugging.Assert(condition, data, summarize=8)


def check_text(text, name="text"):
    """`text` must be a non-empty string vector `[batch]`."""
    expected = f"`{name}` must be a string tensor [batch] with batch >= 1"
    with tf.control_dependencies(_checks(text, 1, expected, [(lambda s: s[0] > 0, "an empty batch")])):
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


def check_frames(frames, name="frames"):
    """`frames` must be uint8 `[batch >= 1, T >= 1, H >= 16, W >= 16, 3]`."""
    expected = f"`{name}` must be uint8 [batch, T, H, W, 3] with batch, T >= 1 and H, W >= {MIN_SIDE}"
    conditions = [
        (lambda s: s[0] > 0, "an empty batch"),
        (lambda s: s[1] > 0, "T = 0 frames"),
        (lambda s: tf.reduce_all(s[2:4] >= MIN_SIDE), f"a frame side below {MIN_SIDE}"),
        (lambda s: tf.equal(s[4], 3), "a channel count other than 3 (RGB)"),
    ]
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

    def resize():
        flat = tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))
        return tf.reshape(fit_images(flat, size), [shape[0], num_frames, size, size, 3])

    same = tf.logical_and(tf.equal(shape[2], size), tf.equal(shape[3], size))
    out = tf.cond(same, lambda: frames, resize)
    return tf.ensure_shape(out, [None, num_frames, size, size, 3])


def decode_clips(encoded, num_frames, size, name="jpeg_frames"):
    """`[b, T]` JPEG/PNG strings -> `[b, num_frames, size, size, 3]` uint8.

    Only the `num_frames` frames the model uses are decoded; each may have its own size.
    """
    expected = f"`{name}` must be a string tensor [batch, T] of JPEG/PNG-encoded frames with batch, T >= 1"
    conditions = [(lambda s: s[0] > 0, "an empty batch"), (lambda s: s[1] > 0, "T = 0 frames")]
    with tf.control_dependencies(_checks(encoded, 2, expected, conditions)):
        encoded = _with_static_shape(tf.identity(encoded), [None, None])
    encoded = tf.gather(encoded, uniform_indices(tf.shape(encoded)[1], num_frames), axis=1)

    def decode_one(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image_shape = tf.shape(image)
        small = fail_unless(
            tf.reduce_all(image_shape[:2] >= MIN_SIDE),
            f"every frame in `{name}` must be at least {MIN_SIDE} px a side.",
        )
        with tf.control_dependencies([small]):
            return fit_images(image[None], size)[0]

    flat = tf.reshape(encoded, [-1])
    decoded = tf.map_fn(decode_one, flat, fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
    return tf.reshape(decoded, [-1, num_frames, size, size, 3])
