"""Stage-1 features: encoder outputs cached once per split (`cache`), and what runs over
them: model inputs, caption groups, predictions and embeddings (`arrays`)."""
