r"""Training batches and the sources that draw them (full-graph triples,
row blocks, LinkNeighborLoader subgraphs)."""
from .batch import BPRBatch, Subgraph
from .neighbor import (
                                       CausalNegatives,
                                       NeighborSource,
                                       PopularityNegatives,
                                       ReplaceNegatives,
                                       UniformNegatives,
                                       to_bpr_batch,
)
from .sources import (
                                       BatchSource,
                                       DistinctUserSource,
                                       RowBlockSource,
                                       TripletSource,
                                       shard_slices,
)

__all__ = [
    'BPRBatch',
    'Subgraph',
    'BatchSource',
    'TripletSource',
    'DistinctUserSource',
    'RowBlockSource',
    'shard_slices',
    'NeighborSource',
    'ReplaceNegatives',
    'UniformNegatives',
    'PopularityNegatives',
    'CausalNegatives',
    'to_bpr_batch',
]
