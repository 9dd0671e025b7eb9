"""Text features use the MiniLM bundled by the 'text' extra (skipped when
it is not installed). The image test uses generated Pillow images and a
randomly initialised torchvision resnet18 whose state dict it saves as the
weights file; it is skipped when torchvision cannot be imported beside this
torch (PyPI's torchvision fails with torch 2.13.0 on the CPU dev machine:
"operator torchvision::nms does not exist": the PyPI wheel is built against
CUDA torch); the same image path with a small CNN saved by torch.export
runs everywhere."""
import json
import os

import numpy as np
import pytest

from pyg_mmrec.data import DataFormatError
from pyg_mmrec.data.preprocess import (
    image_features,
    read_item_features,
    text_features,
)
from pyg_mmrec.data.preprocess.features import (
    default_text_model,
    fill_missing_with_mean,
)
from pyg_mmrec.testing import has_package, with_package


def test_fill_missing_with_mean():
    feat = np.array([[1., 2.], [0., 0.], [3., 4.]], dtype=np.float32)
    out = fill_missing_with_mean(feat, np.array([True, False, True]), 'x')
    assert out[1].tolist() == [2., 3.]
    with pytest.raises(ValueError, match='no item has x'):
        fill_missing_with_mean(feat, np.zeros(3, dtype=bool), 'x')


def text_model_or_skip():
    if not has_package('sentence_transformers'):
        pytest.skip("extra 'text' not installed: pip install -e '.[text]'")
    try:
        path = default_text_model()
    except ImportError as e:
        pytest.skip(str(e))
    from pyg_mmrec.data.preprocess import load_text_model
    return load_text_model(path)


@pytest.fixture(scope='module')
def minilm():
    return text_model_or_skip()


def test_minilm_near_duplicates_are_closer(minilm):
    texts = ['Soft cotton baby blanket, blue',
             'Soft cotton baby blanket in blue',
             'Stainless steel kitchen knife set', '']
    feat = text_features(texts, model=minilm)
    assert feat.shape == (4, 384) and feat.dtype == np.float32
    unit = feat / np.linalg.norm(feat, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2] + 0.3
    assert np.allclose(feat[3], feat[:3].mean(axis=0), atol=1e-6)


def test_no_progress_bar_without_progress(minilm, capsys, caplog):
    # At INFO logging (the command line's), sentence-transformers shows its
    # own bar unless told not to: --no-progress must silence every bar.
    with caplog.at_level('INFO'):
        text_features(['a red dress', 'a blue shirt'], model=minilm,
                      progress=False)
    captured = capsys.readouterr()
    assert 'Batches' not in captured.err + captured.out
    assert '%|' not in captured.err


def test_text_features_in_preprocess(tmp_path, minilm, monkeypatch):
    monkeypatch.setenv('PYG_MMREC_CACHE', str(tmp_path / 'cache'))
    from pyg_mmrec.data import load_dataset
    from pyg_mmrec.data.preprocess import preprocess
    rows = [(f'U{u}', f'I{(u + k) % 8}') for u in range(12) for k in range(5)]
    (tmp_path / 'r.json').write_text(''.join(json.dumps(
        {'reviewerID': u, 'asin': i, 'overall': 5.0, 'unixReviewTime': n})
        + '\n' for n, (u, i) in enumerate(rows)))
    (tmp_path / 'meta.json').write_text(''.join(
        json.dumps({'asin': f'I{i}', 'title': f'toy number {i}'}) + '\n'
        for i in range(7)))  # I7 has no metadata: the mean
    stats = preprocess('amazon', str(tmp_path / 'r.json'),
                       str(tmp_path / 'out'), meta=str(tmp_path / 'meta.json'),
                       user_core=1, item_core=1, text=True)
    assert stats['features']['text'] == {'dim': 384, 'items_without_text': 1}
    feat = np.load(tmp_path / 'out' / 'text_feat.npy')
    assert feat.shape == (8, 384) and feat.dtype == np.float32
    assert load_dataset(str(tmp_path / 'out'))['item'].x_text.shape == (8,
                                                                          384)


@with_package('torchvision')
def test_image_features(tmp_path):
    import torch
    import torchvision
    from PIL import Image
    torch.manual_seed(0)
    weights = tmp_path / 'resnet18.pth'
    torch.save(torchvision.models.resnet18(weights=None).state_dict(),
               weights)  # a random backbone, saved as the user's file
    folder = tmp_path / 'images'
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for name, ext in (('A', 'jpg'), ('B', 'png')):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
                        ).save(folder / f'{name}.{ext}')
    feat = image_features(['A', 'B', 'C'], str(folder), 'resnet18',
                          str(weights), image_size=64)
    assert feat.shape == (3, 512) and feat.dtype == np.float32
    assert np.allclose(feat[2], feat[:2].mean(axis=0), atol=1e-5)


def test_image_features_from_an_exported_backbone(tmp_path):
    # The whole image path (Pillow decoding, resizing, normalisation,
    # batches, the mean for items without an image) with a small random CNN
    # saved by torch.export, which needs no torchvision.
    import torch
    from PIL import Image
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten()).eval()
    batch = torch.export.Dim('batch', min=1)
    program = torch.export.export(cnn, (torch.randn(2, 3, 32, 32), ),
                                  dynamic_shapes=({0: batch}, ))
    torch.export.save(program, tmp_path / 'cnn.pt2')
    folder = tmp_path / 'images'
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    pixels = {}
    for name, ext in (('A', 'jpg'), ('B', 'png'), ('D', 'png')):
        img = Image.fromarray(rng.integers(0, 255, (40, 30, 3),
                                           dtype=np.uint8))
        img.save(folder / f'{name}.{ext}')
        with Image.open(folder / f'{name}.{ext}') as saved:  # jpg is lossy
            pixels[name] = np.asarray(saved.convert('RGB').resize((32, 32)),
                                      dtype=np.float32) / 255.0
    feat = image_features(['A', 'B', 'C', 'D'], str(folder), 'export',
                          str(tmp_path / 'cnn.pt2'), batch_size=2,
                          image_size=32)
    assert feat.shape == (4, 5) and feat.dtype == np.float32
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = torch.from_numpy(np.stack([pixels[n] for n in 'ABD'])).permute(
        0, 3, 1, 2)
    with torch.no_grad():
        expected = cnn((x - mean) / std).numpy()
    assert np.allclose(feat[[0, 1, 3]], expected, atol=1e-5)
    assert np.allclose(feat[2], expected.mean(axis=0), atol=1e-6)
    with pytest.raises(ValueError, match='not a torch.export program'):
        image_features(['A'], str(folder), 'export', str(folder / 'A.jpg'))


def test_image_features_need_weights(tmp_path):
    with pytest.raises(ValueError, match='need --image-weights'):
        image_features(['A'], str(tmp_path), 'resnet50', None)


def write_amazon_binary(path, rows):
    r"""The Amazon 2014 image_features_*.b layout: 10-byte ASIN, 4096 f4."""
    with open(path, 'wb') as f:
        for asin, feat in rows:
            f.write(asin.encode().ljust(10))
            f.write(np.asarray(feat, '<f4').tobytes())


def test_read_amazon_binary_features(tmp_path):
    rng = np.random.default_rng(0)
    a, b, other = (rng.normal(size=4096).astype(np.float32)
                   for _ in range(3))
    path = tmp_path / 'image_features_Toy.b'
    write_amazon_binary(path, [('B000000001', a), ('B00000000X', other),
                               ('B000000002', b)])
    feat = read_item_features(str(path), ['B000000002', 'B000000003',
                                          'B000000001'])
    assert feat.shape == (3, 4096) and feat.dtype == np.float32
    assert np.array_equal(feat[0], b) and np.array_equal(feat[2], a)
    assert np.allclose(feat[1], (a + b) / 2)  # absent: the mean

    with open(path, 'ab') as f:
        f.write(b'B000000004' + b'\0' * 100)  # a truncated record
    with pytest.raises(DataFormatError, match='not a whole number of'):
        read_item_features(str(path), ['B000000001'])


def test_read_text_features(tmp_path):
    import gzip
    path = tmp_path / 'item2imgfeat.txt.gz'
    with gzip.open(path, 'wt') as f:
        f.write('7 1.0 2.0 3.0\n\n9,4.0,5.0,6.0\n8\t0\t0\t0\n')
    feat = read_item_features(str(path), ['9', '7', '5'])
    assert feat.tolist() == [[4., 5., 6.], [1., 2., 3.], [2.5, 3.5, 4.5]]


@pytest.mark.parametrize('content,match', [
    ('7 1 2\n8 1\n', r'item2imgfeat.txt:2: 1 values, the first line has 2'),
    ('7 1 2\n8 1 x\n', r'item2imgfeat.txt:2: non-numeric'),
    ('7\n', r'item2imgfeat.txt:1: expected'),
    ('5 1 2\n', r'no row for any of the 2 items'),
    ('7 1 nan\n', r"NaN or inf in the features of item '7'"),
])
def test_read_text_features_errors(tmp_path, content, match):
    path = tmp_path / 'item2imgfeat.txt'
    path.write_text(content)
    with pytest.raises(DataFormatError, match=match):
        read_item_features(str(path), ['7', '8'])
    with pytest.raises(FileNotFoundError, match='no such feature file'):
        read_item_features(str(tmp_path / 'missing.txt'), ['7'])
