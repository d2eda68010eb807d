"""Training: feature extraction (staged training), fit loops, callbacks."""
