"""Long videos: shots, windows, label timelines and moment search.

The data flow, one way: a video file -> `stream` (decoded once, in a decoder worker, cut
into shots and windows by `segments`) -> `analyze` (each window through a model's
`label_segments` signature, any client) -> `timeline` (label tracks, JSON, a plot) or
`index` (one row per window, moment search). `cli` prints what the commands show.
"""
