r"""Training batches and the sources that draw them (full-graph triples,
row blocks, LinkNeighborLoader subgraphs)."""
from .batch import BPRBatch, Subgraph
from .candidate_pool import AddPoolItems, PoolNeighborSource
from .distinct import DistinctUserNeighborSource
from .generated import (
                                       GeneratedGraphNeighborSource,
                                       UserItemEntries,
                                       to_entry_bpr_batch,
)
from .neighbor import (
                                       NeighborSource,
                                       PopularityNegatives,
                                       ReplaceNegatives,
                                       UniformNegatives,
                                       to_bpr_batch,
)
from .relations import (
                                       AddRelationNeighbors,
                                       Relation,
                                       RelationNeighborSource,
                                       to_relation_bpr_batch,
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
    'DistinctUserNeighborSource',
    'ReplaceNegatives',
    'UniformNegatives',
    'PopularityNegatives',
    'to_bpr_batch',
    'PoolNeighborSource',
    'AddPoolItems',
    'Relation',
    'RelationNeighborSource',
    'AddRelationNeighbors',
    'to_relation_bpr_batch',
    'GeneratedGraphNeighborSource',
    'UserItemEntries',
    'to_entry_bpr_batch',
]
