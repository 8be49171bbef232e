"""Enhancement of whole photos by a trained model.

:mod:`.photos`: the command's function; :mod:`.strips`: exact tiling when memory is short; :mod:`.raw`: learned
ISPs on RAW files.
"""

from dpedkit.enhance.photos import EnhanceResult, ImageResult, collect_inputs, enhance, enhance_array

__all__ = ["EnhanceResult", "ImageResult", "collect_inputs", "enhance", "enhance_array"]
