r"""Preprocessing of raw interaction logs (Amazon reviews, MovieLens,
generic CSV) into the MMRec layout read by
:func:`pyg_mmrec.data.load_dataset`: streaming readers, rating threshold,
iterative k-core, per-user splits and optional item features (text, images,
or precomputed files)."""
from .features import (
    default_text_model,
    image_features,
    load_text_model,
    read_item_features,
    text_features,
)
from .filtering import (
    first_of_duplicates,
    k_core,
    keep_min_rating,
    reindex_by_first_appearance,
)
from .movielens import read_movielens
from .pipeline import (
    ID_MAPS,
    ITEM_META,
    preprocess,
    read_id_mapping,
    read_item_meta,
    read_raw,
    write_id_map,
)
from .raw import (
    FORMATS,
    RawInteractions,
    amazon_item_text,
    numbered_lines,
    open_text,
    read_amazon,
    read_amazon_meta,
    read_delimited,
)
from .split import SPLIT_METHODS, mmrec_split_sizes, split_interactions

__all__ = [
    'FORMATS',
    'RawInteractions',
    'numbered_lines',
    'open_text',
    'read_amazon',
    'read_amazon_meta',
    'amazon_item_text',
    'read_delimited',
    'read_movielens',
    'read_raw',
    'keep_min_rating',
    'first_of_duplicates',
    'k_core',
    'reindex_by_first_appearance',
    'SPLIT_METHODS',
    'mmrec_split_sizes',
    'split_interactions',
    'default_text_model',
    'load_text_model',
    'text_features',
    'image_features',
    'read_item_features',
    'preprocess',
    'read_id_mapping',
    'ID_MAPS',
    'ITEM_META',
    'read_item_meta',
    'write_id_map',
]
