"""Networks: the DPED generator and discriminator, baselines, and the VGG-19 feature extractor.

Import the submodules (this package imports nothing, so ``import dpedkit.nn`` stays free of torch):

- :mod:`dpedkit.nn.generator`: ``Generator``, ``GeneratorConfig``, ``InstanceNorm`` (the official DPED net);
- :mod:`dpedkit.nn.discriminator`: ``Discriminator``, ``to_gray``;
- :mod:`dpedkit.nn.vgg`: ``VGG19Features``, ``load_vgg`` (content loss; local weights only);
- :mod:`dpedkit.nn.baselines`: ``SRCNN``, ``Johnson`` (the paper's comparison models).

Checkpoints (ours and the official TF ones) are read by :mod:`dpedkit.nn.checkpoint`.
"""
