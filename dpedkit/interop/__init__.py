"""Other people's formats: official DPED folders and TensorFlow checkpoint bundles."""
