"""Training side: datasets, models, training loops, evaluation and ONNX bundle export."""
