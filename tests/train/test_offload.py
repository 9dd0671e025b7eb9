import gc
import os

import pytest
import torch

from pyg_mmrec.train.offload import DiskOffload


def trained_linear():
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 3)
    lin.register_buffer('count', torch.arange(4.0))
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    lin(torch.randn(8, 5)).pow(2).sum().backward()
    opt.step()
    return lin, opt


def test_offload_frees_and_restores_bit_for_bit(tmp_path):
    lin, opt = trained_linear()
    before = [t.clone() for t in (lin.weight, lin.bias, lin.count)]
    state = {k: v.clone() for k, v in opt.state[lin.weight].items()}
    offload = DiskOffload([lin], [opt], str(tmp_path))
    offload.offload()
    assert offload.is_offloaded and os.path.getsize(offload.path) > 0
    # Same objects, no memory: weight, bias, buffer and both Adam moments.
    assert all(t.numel() == 0 for t in offload.tensors())
    assert opt.state[lin.weight]['exp_avg'].numel() == 0
    offload.offload()  # already offloaded: nothing happens
    offload.restore()
    assert not offload.is_offloaded
    for t, b in zip((lin.weight, lin.bias, lin.count), before):
        assert torch.equal(t, b)
    for k, v in opt.state[lin.weight].items():
        assert torch.equal(v, state[k])
    # The optimiser still steps the same parameter objects.
    lin(torch.randn(8, 5)).sum().backward()
    opt.step()
    assert not torch.equal(lin.weight, before[0])


def test_offload_file_is_removed_with_the_object(tmp_path):
    lin, opt = trained_linear()
    offload = DiskOffload([lin], [opt], str(tmp_path))
    offload.offload()
    path = offload.path
    del offload
    gc.collect()
    assert not os.path.exists(path)


def test_offload_bad_directory(tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    with pytest.raises(ValueError, match='a-file'):
        DiskOffload([torch.nn.Linear(2, 2)], [], str(blocker / 'sub'))
