"""kmm-shapes: a generated video-text benchmark (`kmm data synth`)."""
