"""Long videos: label timelines and moment search.

The data flow, one way: a video file -> `kmm.data.shot_stream` (decoded once, in a decoder
worker, cut into shots and windows by `kmm.data.segments`) -> `analyze` (each window through
a model's `label_segments` signature, any client) -> `timeline` (label tracks, JSON, a plot)
or `index` (one row per window, moment search). `cli` prints what the commands show.
"""
