r"""Training batches and the sources that draw them (full-graph triples,
row blocks; sampled subgraphs plug in through :class:`Subgraph`)."""
from pyg_mmrec.loader.batch import BPRBatch, Subgraph
from pyg_mmrec.loader.sources import (BatchSource, DistinctUserSource,
                                      RowBlockSource, TripletSource)

__all__ = ['BPRBatch', 'Subgraph', 'BatchSource', 'TripletSource',
           'DistinctUserSource', 'RowBlockSource']
