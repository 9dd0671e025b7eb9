r"""Graph construction: normalised bipartite adjacencies, modality kNN
graphs, co-occurrence and homography graphs, edge pruning. Every builder
returns a coalesced :obj:`torch.sparse_csr` tensor. :class:`PairIndex` is
the sorted pair index every sampler and the evaluator share, and
:func:`train_graph` the one owner of a dataset's training interactions."""
from .bipartite import (
    bipartite_adjacency,
    bipartite_degrees,
    generated_adjacency,
    subgraph_adjacency,
    unique_pairs,
    user_item_matrix,
    user_item_values,
)
from .clusters import (
    GENREC_CLUSTERS,
    elbow_num_clusters,
    kmeans_clusters,
    modality_clusters,
)
from .cooccurrence import (
    cooccurrence_graph,
    topk_entries_per_row,
    topk_per_row,
)
from .homography import (
    cooccurrence_topk,
    cooccurrence_topk_graph,
    homography_graphs,
    interest_features,
    mixed_knn_adjacency,
    similarity_graph,
    urn_padded_slots,
)
from .knn import knn_adjacency, knn_graph, principal_projection
from .pairs import PairIndex, interaction_graph, split_graph, train_graph
from .pruning import (
    degree_sensitive_edges,
    degree_sensitive_pruning,
    pruning_weights,
    sample_without_replacement,
)
from .sparse import (
    csr_dense_rows,
    csr_row_block,
    csr_rows_mm,
    csr_to_edge_index,
    csr_transpose,
    degree_power,
    drop_entries,
    elementwise_max,
    expand_runs,
    normalize_edge_weight,
    row_sum,
    to_sparse_csr,
    weighted_sum,
)

__all__ = [
    'to_sparse_csr',
    'csr_to_edge_index',
    'row_sum',
    'degree_power',
    'normalize_edge_weight',
    'weighted_sum',
    'expand_runs',
    'csr_dense_rows',
    'csr_rows_mm',
    'csr_row_block',
    'csr_transpose',
    'drop_entries',
    'elementwise_max',
    'knn_graph',
    'knn_adjacency',
    'principal_projection',
    'unique_pairs',
    'bipartite_degrees',
    'user_item_values',
    'bipartite_adjacency',
    'subgraph_adjacency',
    'user_item_matrix',
    'generated_adjacency',
    'cooccurrence_graph',
    'topk_entries_per_row',
    'topk_per_row',
    'sample_without_replacement',
    'pruning_weights',
    'degree_sensitive_pruning',
    'degree_sensitive_edges',
    'PairIndex',
    'split_graph',
    'interaction_graph',
    'train_graph',
    'cooccurrence_topk',
    'cooccurrence_topk_graph',
    'interest_features',
    'similarity_graph',
    'homography_graphs',
    'mixed_knn_adjacency',
    'urn_padded_slots',
    'GENREC_CLUSTERS',
    'kmeans_clusters',
    'elbow_num_clusters',
    'modality_clusters',
]
