"""Phone-to-DSLR alignment: features, robust homography, validation, crop and warp."""
