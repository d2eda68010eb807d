"""The contract shared by data, encoders, models, export and apps.

Every feature key, encoder output key and built-in handle name is spelled here once;
other modules import these constants instead of repeating string literals.
"""

# === Encoder input keys ===
FRAMES = "frames"  # uint8 (batch, frames, height, width, 3)
TEXT = "text"  # string (batch,)

# === Offline text encoder outputs (kmm://minilm-l6 and the tiny test encoder) ===
SEQUENCE_OUTPUT = "sequence_output"  # float32 (batch, tokens, dim)
PADDING_MASK = "padding_mask"  # bool (batch, tokens), True = real token
POOLED_OUTPUT = "pooled_output"  # float32 (batch, dim), masked mean of sequence_output
INPUT_IDS = "input_ids"  # int32 (batch, tokens)

# === Offline frame encoder outputs (kmm://efficientnet-lite0 and the tiny test encoder) ===
FRAME_FEATURES = "features"  # float32 (batch, frames, dim)
FRAME_LOGITS = "logits"  # float32 (batch, frames, classes)
FRAME_FEATURE_MAP = "feature_map"  # float32 (batch, frames, h / 32, w / 32, channels)
FRAME_FEATURE_MAP_16 = "feature_map_16"  # float32 (batch, frames, h / 16, w / 16, channels)

# === Offline video encoder outputs (kmm://i3d-kinetics-400) ===
CLIP_FEATURES = "features"  # float32 (batch, dim): the classifier's pooled input
CLIP_LOGITS = "logits"  # float32 (batch, classes)
CLIP_PROBABILITIES = "probabilities"  # float32 (batch, classes), softmax of the logits
CLIP_FEATURE_MAP = "mixed_5c"  # float32 (batch, ceil(T / 8), 7, 7, 1024) at 224 px
RGB_INPUT = "rgb_input"  # float32 (batch, T, 224, 224, 3) in [0, 1]: TF-Hub's I3D `default` signature

# === Canonical outputs of kmm's encoder adapters (what models consume) ===
VIDEO_TOKENS = "video_tokens"  # float32 (batch, steps, dim)
VIDEO_PADDING_MASK = "video_padding_mask"  # bool (batch, steps)
VIDEO_EMBEDDING = "video_embedding"  # float32 (batch, dim)
TEXT_TOKENS = "text_tokens"  # float32 (batch, tokens, dim)
TEXT_PADDING_MASK = "text_padding_mask"  # bool (batch, tokens)
TEXT_EMBEDDING = "text_embedding"  # float32 (batch, dim)

# === Model inputs and outputs (feature models, end-to-end models, exports) ===
VIDEO_FEATURES = "video_features"  # float32 (batch, steps, dim): cached frame encoder outputs
VIDEO_POOLED = "video_pooled"  # (batch, dim), only for fusion="none" / "concat"
VIDEO_CELLS = "video_cells"  # (batch, steps * cells, dim), for fusion="text_guided"
CAPTION_EMBEDDING = "caption_embedding"  # (batch, text_dim): the text encoder's pooled caption
CAPTION_TOKENS = "caption_tokens"  # (batch, max_caption_tokens, text_dim)
CAPTION_PADDING_MASK = "caption_padding_mask"  # bool (batch, max_caption_tokens)
LOGITS = "logits"  # (batch, labels): the classification head
FRAME_ATTENTION = "frame_attention"  # (batch, frames): how much each frame weighed in the answer
PROBABILITIES = "probabilities"  # (batch, labels), softmax of the logits
SIMILARITY = "similarity"  # (batch, batch) training logits: video i against caption j
EMBEDDING = "embedding"  # (batch, dim), unit norm: what the embedding signatures and towers return

# === Default export location: TF Serving's layout <EXPORT_BASE>/<name>/<version>/ ===
EXPORT_BASE = "saved_models"
MODEL_NAME = "kmm"

# === Built-in offline encoders, addressed as kmm://<name> ===
HANDLE_SCHEME = "kmm://"
MINILM_L6 = "minilm-l6"
EFFICIENTNET_LITE0 = "efficientnet-lite0"
TINY_TEXT = "tiny-text"
TINY_FRAMES = "tiny-frames"
I3D_KINETICS_400 = "i3d-kinetics-400"

# === Manifest columns (CSV header / JSONL keys) ===
VIDEO = "video"  # path, relative to the manifest or absolute
CAPTION = "caption"  # optional free text describing the clip
LABEL = "label"  # optional class name
SPLIT = "split"  # optional: train / val / test / compositional / ...
MANIFEST_COLUMNS = (VIDEO, CAPTION, LABEL, TEXT, SPLIT)

# === Pipeline outputs beyond the inputs above ===
LABEL_ID = "label_id"  # int32 index into the label names, -1 when unlabelled
ROW = "row"  # int64 manifest row number, to trace a sample back to its file
