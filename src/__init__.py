"""normlab: which normalization layer should this CNN use at this batch size?"""

__version__ = "0.1.0"
