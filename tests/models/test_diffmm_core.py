import pytest
import torch

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import RowBlockSource
from pyg_mmrec.models import DiffMMCore, Stage
from pyg_mmrec.nn import LightGCNEncoder


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=40, num_items=25, seed=2)


def dense_train(data):
    graph = train_graph(data)
    r = torch.zeros(graph.num_users, graph.num_items)
    r[graph.edge_index[0], graph.edge_index[1]] = 1.0
    return r


class Generator:
    r"""A deterministic generator: user u's items (u + j * (key index + 1))
    mod I, recording the blocks it is called with."""
    def __init__(self, keys, num_items):
        self.keys, self.num_items, self.calls = list(keys), num_items, []

    def __call__(self, key, rows, k):
        self.calls.append((key, rows.clone(), k))
        step = self.keys.index(key) + 1
        first = rows.argmax(dim=1)  # any function of the rows
        return (first[:, None] + step * torch.arange(k)) % self.num_items


def make(data, keys=('image', 'text'), **kwargs):
    gen = Generator(keys, 25)
    kwargs.setdefault('rebuild_k', 2)
    return DiffMMCore(data, keys, gen, **kwargs), gen


def test_training_graph_forms_equal_the_dense_formulas(data):
    core, _ = make(data)
    r = dense_train(data)
    U, I = r.shape  # noqa: E741
    d_u, d_i = r.sum(1) + 1, r.sum(0) + 1
    norm = r / (d_u[:, None] * d_i[None, :]).sqrt()
    adj = torch.zeros(U + I, U + I)
    adj[:U, U:], adj[U:, :U] = norm, norm.t()
    adj[:U, :U], adj[U:, U:] = torch.diag(1 / d_u), torch.diag(1 / d_i)
    torch.testing.assert_close(core.adj.to_dense(), adj)
    assert torch.equal(core.interactions.to_dense(), r)
    torch.testing.assert_close(core.norm_interactions.to_dense(), norm)
    torch.testing.assert_close(core.norm_interactions_t.to_dense(), norm.t())
    torch.testing.assert_close(core.loop_user, 1 / d_u[:, None])
    torch.testing.assert_close(core.loop_item, 1 / d_i[:, None])
    x_u, x_i = torch.randn(U, 3), torch.randn(I, 3)
    blocks = core.adj_blocks(x_u, x_i)
    out = adj @ torch.cat([x_u, x_i])
    torch.testing.assert_close(blocks['uu'] + blocks['ui'], out[:U])
    torch.testing.assert_close(blocks['iu'] + blocks['ii'], out[U:])
    users = torch.tensor([3, 0, 3])
    assert torch.equal(core.rows(users), r[users])
    assert core.split(out)[0].shape == (U, 3)
    # buffers outside the state dict: only the generated items and seed
    assert set(core.state_dict()) == {'generated_image', 'generated_text',
                                      'dropout_seed', 'has_generated'}


@pytest.mark.parametrize('block', [1, 7, 40])
def test_rebuild_is_blockwise_and_graphs_follow_the_items(data, block):
    core, gen = make(data, keep_rate=1.0, denoiser_batch_size=block)
    assert not bool(core.has_generated)
    adj, adj_t = core.graph('text')  # generated on first use
    assert bool(core.has_generated)
    assert len(gen.calls) == 2 * -(-40 // block)  # per key, per block
    assert all(rows.size(0) <= block and k == 2 for _, rows, k in gen.calls)
    r = dense_train(data)
    full = Generator(['image', 'text'], 25)
    for i, key in enumerate(['image', 'text']):
        items = getattr(core, f'generated_{key}')
        assert torch.equal(items, full(key, r, 2))
    # G: the generated edges, self-looped and GCN-normalised, both ways
    items = core.generated_text
    g = torch.zeros(65, 65)
    for u in range(40):
        for i in items[u].tolist():
            g[u, 40 + i] = g[40 + i, u] = 1.0
    g = g + torch.eye(65)
    deg = g.sum(1).rsqrt()
    torch.testing.assert_close(adj.to_dense(), deg[:, None] * g * deg)
    assert torch.equal(adj_t.to_dense(), adj.to_dense().t())
    assert core.graph('text')[0] is adj  # cached


def test_rebuild_of_some_users_keeps_the_others_items(data):
    core, gen = make(data, keep_rate=1.0, denoiser_batch_size=3)
    core.rebuild()
    before = core.generated_image.clone()
    adj = core.graph('image')[0]
    core.generated_image[:] = 24  # what a rebuild of every user overwrites
    users = torch.tensor([5, 0, 17, 9])
    gen.calls.clear()
    core.rebuild(users)
    # two blocks of at most 3 users, per key
    assert [rows.size(0) for _, rows, _ in gen.calls] == [3, 1, 3, 1]
    rest = torch.ones(40, dtype=torch.bool)
    rest[users] = False
    assert torch.equal(core.generated_image[users], before[users])
    assert torch.all(core.generated_image[rest] == 24)
    assert core.graph('image')[0] is not adj  # the graphs follow


def test_seed_is_drawn_at_each_rebuild_and_a_loaded_state_rebuilds_the_graphs(
        data):
    core, _ = make(data, keep_rate=0.5)
    torch.manual_seed(0)
    core.rebuild()
    seed = int(core.dropout_seed)
    g_image, g_text = core.graph('image')[0], core.graph('text')[0]
    # each key's entries are dropped under its own seed
    assert g_image._nnz() < 2 * 40 * 2 + 65
    copy, _ = make(data, keep_rate=0.5)
    copy.load_state_dict(core.state_dict())
    assert copy.graph_image is None  # derived, not loaded
    assert torch.equal(copy.graph('image')[0].to_dense(), g_image.to_dense())
    assert torch.equal(copy.graph('text')[0].to_dense(), g_text.to_dense())
    core.rebuild()
    assert int(core.dropout_seed) != seed and core.graph_image is None
    core.load_state_dict(copy.state_dict())  # drops the cached graphs
    assert core.graph_image is None


def test_stage_trains_row_blocks_and_rebuilds_after(data):
    core, _ = make(data, denoiser_batch_size=16, denoiser_lr=3e-4)
    module = torch.nn.Linear(25, 25)

    def loss(users):
        return {'mse': module(core.rows(users)).pow(2).mean()}

    stage = core.stage('denoiser', [module], loss)
    assert isinstance(stage, Stage) and stage.name == 'denoiser'
    assert isinstance(stage.source, RowBlockSource)
    assert len(stage.source) == 3 and stage.source.num_rows == 40
    assert dict(stage.optimizer_kwargs) == {'lr': 3e-4}
    assert stage.after == core.rebuild
    assert stage.parameters() == list(module.parameters())
    calls = []
    other = core.stage('diffusion', [module], loss,
                       after=lambda: calls.append(1), backward_per_term=True)
    other.after()
    assert calls == [1] and other.backward_per_term


def test_reg_terms_and_views(data):
    core, _ = make(data, keep_rate=1.0, reg_weight=0.1)
    a, b = torch.randn(40, 3), torch.randn(25, 3)
    terms = core.reg_terms(a, b)
    torch.testing.assert_close(terms['reg'],
                               0.1 * (a.pow(2).sum() + b.pow(2).sum()))
    off, _ = make(data, reg_weight=0.0)
    assert off.reg_terms(a, b) == {}
    encoder = LightGCNEncoder(1, combine='sum', symmetric=True)
    feats = {'image': torch.randn(25, 3), 'text': torch.randn(25, 3)}
    views = core.views(encoder, a, feats)
    g = core.graph('image')[0].to_dense()
    x = g @ torch.cat([a, torch.nn.functional.normalize(feats['image'])])
    adj = core.adj.to_dense()
    expected = x + adj @ x
    torch.testing.assert_close(views['image'][0], expected[:40])
    torch.testing.assert_close(views['image'][1], expected[40:])


@pytest.mark.parametrize('kwargs,match', [
    ({'rebuild_k': 0}, 'rebuild_k'), ({'rebuild_k': 26}, 'rebuild_k'),
    ({'keep_rate': 0.0}, 'keep_rate'),
    ({'denoiser_batch_size': 0}, 'denoiser_batch_size'),
])
def test_bad_arguments(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(data, **kwargs)
    core, _ = make(data)
    assert repr(core) == ("DiffMMCore(num_users=40, num_items=25, "
                          "keys=['image', 'text'], rebuild_k=2, "
                          "keep_rate=0.5)")
