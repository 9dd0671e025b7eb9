import os

import pytest

from pyg_mmrec.data.preprocess.output import (
    atomic_output_dir,
    check_output_dir,
    foreign_entries,
    replace_dir,
)


def write(path, text='x'):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def hidden(parent):
    return sorted(e for e in os.listdir(parent) if e.startswith('.'))


def test_atomic_output_dir_new(tmp_path):
    out = tmp_path / 'a' / 'b' / 'out'
    with atomic_output_dir(str(out)) as folder:
        assert os.path.basename(folder) == f'.out.tmp-{os.getpid()}'
        assert os.path.dirname(folder) == str(out.parent)
        assert not out.exists()
        write(tmp_path / 'a' / 'b' / folder / 'x.inter')
    assert os.listdir(out) == ['x.inter']
    assert hidden(out.parent) == []


def test_atomic_output_dir_failure_leaves_nothing(tmp_path):
    out = tmp_path / 'new' / 'deeper' / 'out'
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_output_dir(str(out)) as folder:
            write(out.parent / folder / 'x.inter')
            raise RuntimeError('boom')
    assert not (tmp_path / 'new').exists()  # created parents removed too


def test_atomic_output_dir_replaces_existing(tmp_path):
    out = tmp_path / 'out'
    write(out / 'old.inter')
    with atomic_output_dir(str(out)) as folder:
        write(tmp_path / folder / 'new.inter')
        assert os.listdir(out) == ['old.inter']  # untouched until the end
    assert os.listdir(out) == ['new.inter']
    assert hidden(tmp_path) == []


def test_atomic_output_dir_failure_keeps_existing(tmp_path):
    out = tmp_path / 'out'
    write(out / 'old.inter', 'old')
    with pytest.raises(KeyboardInterrupt):
        with atomic_output_dir(str(out)) as folder:
            write(tmp_path / folder / 'new.inter')
            raise KeyboardInterrupt
    assert os.listdir(out) == ['old.inter']
    assert (out / 'old.inter').read_text() == 'old'
    assert hidden(tmp_path) == []


def test_replace_dir_restores_old_on_failure(tmp_path, monkeypatch):
    out, new = tmp_path / 'out', tmp_path / 'new'
    write(out / 'old.inter')
    write(new / 'new.inter')
    rename = os.rename

    def failing(src, dst):
        if src == str(new):
            raise OSError('disk full')
        rename(src, dst)

    monkeypatch.setattr(os, 'rename', failing)
    with pytest.raises(OSError, match='disk full'):
        replace_dir(str(new), str(out))
    assert os.listdir(out) == ['old.inter']
    assert hidden(tmp_path) == []


def test_check_output_dir(tmp_path):
    check_output_dir(str(tmp_path / 'absent' / 'out'))
    write(tmp_path / 'file')
    with pytest.raises(ValueError, match=r'file: exists and is not a folder'):
        check_output_dir(str(tmp_path / 'file'))
    with pytest.raises(ValueError, match=r'file: exists and is not a folder'):
        check_output_dir(str(tmp_path / 'file' / 'out'))
    out = tmp_path / 'out'
    for name in ('toy.inter', 'u_id_mapping.csv', 'i_id_mapping.csv',
                 'stats.json', 'image_feat.npy'):
        write(out / name)
    check_output_dir(str(out), [str(tmp_path / 'file')])
    with pytest.raises(ValueError, match=r'holds the input .*image_feat'):
        check_output_dir(str(out), [None, str(out / 'image_feat.npy')])
    write(out / 'notes.txt')
    (out / 'sub').mkdir()
    assert foreign_entries(str(out)) == ['notes.txt', 'sub']
    with pytest.raises(ValueError, match=r'holds 2 entries that '
                       r'preprocessing does not write \(notes\.txt, sub\)'):
        check_output_dir(str(out))
