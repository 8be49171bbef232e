"""Synthetic phone/DSLR pairs with known geometry (:mod:`.pairs`) written as camera files (:mod:`.files`).

Not a pipeline stage: it makes test and demo data that the stages then read as if a person had shot it.
"""

from dpedkit.synth.pairs import SynthPair, SynthResult, iter_pairs, load_truth, make_pair, synthesize

__all__ = ["SynthPair", "SynthResult", "iter_pairs", "load_truth", "make_pair", "synthesize"]
