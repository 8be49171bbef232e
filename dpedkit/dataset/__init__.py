"""The dataset stage: pairing, per-patch refinement, HDF5 shards, the build and the dataset format."""
