"""Chinese word segmentation and part-of-speech tags (no torch): ``Segmenter``, ``segment``.

>>> from megasense.segmentation import Segmenter
>>> Segmenter(user_dict=["小米14"]).cut("我买了小米14 Pro")     # doctest: +SKIP
['我', '买', '了', '小米14', 'Pro']

``engines.py`` holds the engines (pkuseg by default, jieba), ``dictionary.py`` user dictionaries,
``tagsets.py`` the native tagset and its mapping to Universal POS.
"""

from megasense.segmentation.dictionary import UserWord, read_user_dict
from megasense.segmentation.engines import ENGINES, resolve_engine
from megasense.segmentation.segmenter import TAGSETS, Segmentation, Segmenter, segment
from megasense.segmentation.tagsets import UPOS_TAGS, to_upos

__all__ = [
    "ENGINES",
    "TAGSETS",
    "UPOS_TAGS",
    "Segmentation",
    "Segmenter",
    "UserWord",
    "read_user_dict",
    "resolve_engine",
    "segment",
    "to_upos",
]
