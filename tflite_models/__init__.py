"""healthgate: tflite_models."""
