"""Training data: diagnosis vocabulary, class configurations, source readers, the index builder, datasets."""
