"""Networks: the DPED generator and discriminator, baselines, and the VGG-19 feature extractor."""
