"""Optional dependencies, probed once (like :mod:`torch_geometric.typing`)."""
import importlib.util

WITH_TORCH_SPARSE = importlib.util.find_spec('torch_sparse') is not None
WITH_TORCH_CLUSTER = importlib.util.find_spec('torch_cluster') is not None
