import gzip

import pytest

from pyg_mmrec.data import DataFormatError
from pyg_mmrec.data.textio import (
    check_plain_text,
    dataset_lines,
    numbered_lines,
    open_text,
)


@pytest.mark.parametrize('gzipped', [False, True])
def test_numbered_lines_strips_bom_once(tmp_path, gzipped):
    content = '\ufeffa\r\n\ufeffb\nc'.encode('utf-8')
    path = tmp_path / 'f.txt'
    path.write_bytes(gzip.compress(content) if gzipped else content)
    assert list(numbered_lines(str(path))) == [
        (1, 'a\r\n'), (2, '\ufeffb\n'), (3, 'c')]


def test_numbered_lines_other_encoding(tmp_path):
    path = tmp_path / 'movies.dat'
    path.write_bytes('1::Pok\xe9\n'.encode('latin-1'))
    assert list(numbered_lines(str(path), 'latin-1')) == [(1, '1::Pok\xe9\n')]
    with pytest.raises(DataFormatError, match=r'movies\.dat:1: not valid '
                       r'UTF-8 text \(byte 0xe9 at position 7 of the line'):
        list(numbered_lines(str(path)))


def test_numbered_lines_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.txt: no such file'):
        list(numbered_lines(str(tmp_path / 'nope.txt')))


def test_empty_gzip_member_is_not_corrupt(tmp_path):
    path = tmp_path / 'empty.gz'
    path.write_bytes(gzip.compress(b''))
    assert list(numbered_lines(str(path))) == []


def test_truncated_gzip(tmp_path):
    path = tmp_path / 'f.gz'
    path.write_bytes(gzip.compress(b'line\n' * 10000)[:40])
    with pytest.raises(DataFormatError, match=r'f\.gz: corrupt or truncated '
                       r'gzip file \(after line \d+'):
        list(numbered_lines(str(path)))


def test_open_text_is_strict(tmp_path):
    path = tmp_path / 'f.txt'
    path.write_bytes(b'\xef\xbb\xbfok\n')
    with open_text(str(path)) as f:
        assert f.read() == 'ok\n'  # the byte-order mark removed
    path.write_bytes(b'ok\n\xff\n')
    with open_text(str(path)) as f, pytest.raises(UnicodeDecodeError):
        f.read()  # never replaced


def test_dataset_lines_refuse_gzip_and_bad_utf8(tmp_path):
    path = tmp_path / 'toy.inter'
    path.write_bytes(gzip.compress(b'userID\titemID\n'))
    with pytest.raises(DataFormatError, match=r'toy\.inter: the file is '
                       r'gzip-compressed: decompress it first'):
        check_plain_text(str(path))
    with pytest.raises(DataFormatError, match='gzip-compressed'):
        list(dataset_lines(str(path)))
    path.write_bytes(b'\xef\xbb\xbfuserID\n0\n\x80\n')
    lines = dataset_lines(str(path))
    assert next(lines) == (1, 'userID\n') and next(lines) == (2, '0\n')
    with pytest.raises(DataFormatError, match=r'toy\.inter:3: not valid '
                       r'UTF-8'):
        next(lines)
