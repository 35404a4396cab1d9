"""MiniPlaces data: the layout and list files, verify and download, the decoded cache, batch transforms.

The input pipeline decodes every JPEG once per data set into a memory-mapped uint8 cache file
(`load_split`) that later processes map in seconds, then augments whole batches on their device
(`TrainAugment`, `EvalTransform`). Images leave the transforms as float pixels in [0, 1]; models
normalise themselves with `Normalize`.
"""
from lib.data.layout import (  # noqa: F401 (the package's API)
    PROJECT_ROOT, SAMPLE_ROOT, LIST_FILES, SPLITS, NUM_CLASSES, DataError, read_categories, read_list,
    DECODE_ERRORS, open_rgb, fingerprint)
from lib.data.download import (  # noqa: F401 (the package's API)
    DATA_URL, DATA_MD5, LISTS_URL, verify, download)
from lib.data.decoded import (  # noqa: F401 (the package's API)
    base_size, square_uint8, MiniPlaces, CACHE_FORMAT, evenly_spaced, cache_dir, CachedSplit, load_split)
from lib.data.tune import TUNE_PER_CLASS, tune_indices, tune_part, split_off_tune  # noqa: F401 (the package's API)
from lib.data.transforms import (  # noqa: F401 (the package's API)
    IMAGENET_MEAN, IMAGENET_STD, Normalize, TrainAugment, EvalTransform)
