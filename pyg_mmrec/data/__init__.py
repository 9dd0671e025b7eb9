r"""Datasets as :class:`~torch_geometric.data.HeteroData`: the data contract,
readers for the MMRec and DiffMM layouts, a synthetic generator and cached
loading."""
from .dataset import (
    MMRecDataset,
    available_datasets,
    dataset_statistics,
    default_cache_dir,
    default_root,
    load_dataset,
)
from .diffmm import SparseMatrixUnpickler
from .hetero import (
    INTERACTS,
    ITEM,
    MODALITY_ORDER,
    REV_INTERACTS,
    SPLITS,
    USER,
    DataFormatError,
    build_hetero_data,
    item_features,
    modalities,
    num_items,
    num_users,
    require_features,
    split_edge_index,
)
from .readers import (
    detect_format,
    raw_files,
    read_diffmm,
    read_folder,
    read_mmrec,
)
from .synthetic import (
    DEFAULT_MODALITIES,
    add_synthetic_features,
    make_synthetic,
    modality_features,
)

__all__ = [
    'USER',
    'ITEM',
    'INTERACTS',
    'REV_INTERACTS',
    'SPLITS',
    'MODALITY_ORDER',
    'DataFormatError',
    'build_hetero_data',
    'num_users',
    'num_items',
    'modalities',
    'item_features',
    'split_edge_index',
    'require_features',
    'detect_format',
    'raw_files',
    'read_mmrec',
    'read_diffmm',
    'read_folder',
    'SparseMatrixUnpickler',
    'make_synthetic',
    'modality_features',
    'add_synthetic_features',
    'DEFAULT_MODALITIES',
    'MMRecDataset',
    'load_dataset',
    'available_datasets',
    'dataset_statistics',
    'default_root',
    'default_cache_dir',
]
