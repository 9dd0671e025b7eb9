import gzip
import json

import numpy as np
import pytest

from pyg_mmrec.data import DataFormatError
from pyg_mmrec.data.preprocess import (
    amazon_item_text,
    read_amazon,
    read_amazon_meta,
    read_delimited,
    read_movielens,
)
from pyg_mmrec.data.preprocess.movielens import read_movielens_titles


def review(user, item, rating=5.0, time=100, **extra):
    return json.dumps({'reviewerID': user, 'asin': item, 'overall': rating,
                       'unixReviewTime': time, **extra})


def test_amazon_2014_gzipped_by_magic_bytes(tmp_path):
    path = tmp_path / 'reviews.json'  # no .gz suffix: detected from bytes
    with gzip.open(path, 'wt') as f:
        f.write(review('A1', 'B1', 4.0, 10, reviewText='nice') + '\n\n')
        f.write(review('A2', 'B1', 2.0, 20) + '\n')
        f.write(review('A1', 'B2', 5.0, 30) + '\n')
    raw = read_amazon(str(path))
    assert raw.user.tolist() == [0, 1, 0] and raw.item.tolist() == [0, 0, 1]
    assert raw.rating.tolist() == [4.0, 2.0, 5.0]
    assert raw.time.tolist() == [10, 20, 30]
    assert raw.user_ids == ['A1', 'A2'] and raw.item_ids == ['B1', 'B2']
    assert raw.lines == 3


def test_amazon_2018_and_loose_json(tmp_path):
    path = tmp_path / 'reviews.json'
    path.write_text(
        review('A1', 'B1', 5.0, 1, vote='2', style={'Size:': ' M'}) + '\n' +
        "{'reviewerID': 'A2', 'asin': 'B3', 'overall': 3.0, "
        "'unixReviewTime': 7, 'helpful': [0, 1]}\n")
    raw = read_amazon(str(path))
    assert raw.user_ids == ['A1', 'A2'] and raw.item_ids == ['B1', 'B3']
    assert raw.rating.tolist() == [5.0, 3.0] and raw.time.tolist() == [1, 7]


@pytest.mark.parametrize('line,problem', [
    ('{"reviewerID": "A1", "asin": ', r"malformed JSON line \("),
    ('{"reviewerID": "A1", "overall": 1, "unixReviewTime": 2}',
     "missing field 'asin'"),
    ('{"reviewerID": "A1", "asin": "B", "overall": "x", '
     '"unixReviewTime": 2}', "non-numeric rating"),
    ('[1, 2]', 'expected a JSON object'),
])
def test_amazon_errors_name_file_and_line(tmp_path, line, problem):
    path = tmp_path / 'reviews.json.gz'
    with gzip.open(path, 'wt') as f:
        f.write(review('A1', 'B1') + '\n' + line + '\n')
    with pytest.raises(DataFormatError,
                       match=rf"reviews\.json\.gz:2: {problem}"):
        read_amazon(str(path))


def test_amazon_meta_only_wanted_items(tmp_path):
    path = tmp_path / 'meta.json.gz'
    with gzip.open(path, 'wt') as f:
        f.write("{'asin': 'B1', 'title': 'Soft Blanket', 'brand': 'Acme', "
                "'categories': [['Baby', 'Bedding'], ['Baby']], "
                "'description': 'Warm.'}\n")
        f.write(json.dumps({'asin': 'B2', 'title': 'Spoon',
                            'category': ['Kitchen'],
                            'description': ['Steel', 'spoon']}) + '\n')
        f.write(json.dumps({'asin': 'B9', 'title': 'Dropped'}) + '\n')
    texts = read_amazon_meta(str(path), {'B1', 'B2', 'B5'})
    assert texts == {'B1': 'Soft Blanket Acme Baby Bedding Warm.',
                     'B2': 'Spoon Kitchen Steel spoon'}
    assert amazon_item_text({}) == ''


def test_movielens_100k(tmp_path):
    (tmp_path / 'u.data').write_text('196\t242\t3\t881250949\n'
                                     '186\t302\t3\t891717742\n'
                                     '196\t302\t1\t878887116\n')
    (tmp_path / 'u.item').write_bytes(
        '242|Kolya (1996)|24-Jan-1997||http://x|0|0\n'
        '302|L.A. Confidential (1997)|01-Jan-1997||http://y|0|1\n'
        '303|Caf\xe9 (1997)|01-Jan-1997||http://z|0|1\n'.encode('latin-1'))
    raw = read_movielens(str(tmp_path))  # the folder
    assert raw.user_ids == ['196', '186'] and raw.item_ids == ['242', '302']
    assert raw.user.tolist() == [0, 1, 0] and raw.rating.tolist() == [3, 3, 1]
    assert raw.time.tolist() == [881250949, 891717742, 878887116]
    titles = read_movielens_titles(str(tmp_path / 'u.data'),
                                   {'242', '303'})
    # the genre flags (after 5 columns) by name: unknown, Action, ...
    assert titles == {'242': 'Kolya (1996)', '303': 'Caf\xe9 (1997) Action'}
    (tmp_path / 'u.item').write_bytes(
        b'242|Kolya (1996)|24-Jan-1997||http://x|0|0|1|0|0|1\n')
    assert read_movielens_titles(str(tmp_path / 'u.data'), {'242'}) == {
        '242': 'Kolya (1996) Adventure Comedy'}
    (tmp_path / 'u.genre').write_bytes(b'Drama|0\nComedy|1\nFun|2\n\n')
    assert read_movielens_titles(str(tmp_path / 'u.data'), {'242'}) == {
        '242': 'Kolya (1996) Fun'}


def test_movielens_latest_csv(tmp_path):
    (tmp_path / 'ratings.csv').write_text(
        'userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n'
        '2,10,4.0,835355493\n')
    (tmp_path / 'movies.csv').write_text(
        'movieId,title,genres\n10,GoldenEye (1995),Action|Thriller\n'
        '31,"Dangerous Minds, The (1995)",Drama\n')
    raw = read_movielens(str(tmp_path / 'ratings.csv'))
    assert raw.item_ids == ['31', '10'] and raw.rating.tolist() == [2.5, 4.0]
    titles = read_movielens_titles(str(tmp_path), {'10', '31'})
    assert titles == {'10': 'GoldenEye (1995) Action Thriller',
                      '31': 'Dangerous Minds, The (1995) Drama'}


def test_generic_csv(tmp_path):
    path = tmp_path / 'log.tsv'
    path.write_text('ts\tuid\tiid\tscore\n5\tu1\ti1\t1\n6\tu2\ti1\t0.5\n')
    raw = read_delimited(str(path), 'uid', 'iid', 'score', 'ts', '\t')
    assert raw.user_ids == ['u1', 'u2'] and raw.time.tolist() == [5, 6]
    assert raw.rating.tolist() == [1.0, 0.5]
    implicit = read_delimited(str(path), 'uid', 'iid', delimiter='\t')
    assert np.all(implicit.rating == 1.0) and np.all(implicit.time == 0)


@pytest.mark.parametrize('content,match', [
    ('user,item\nu1,i1\nu2\n', r"log\.csv:3: 1 field\(s\), expected at "
     r"least 2"),
    ('user,item,r\nu1,i1,x\n', r"log\.csv:2: non-numeric rating 'x'"),
    ('uid,item\nu1,i1\n', r"log\.csv: missing user column 'user'; found "
     r"columns \['uid', 'item'\]"),
    ('user,item\n', r"log\.csv: no interactions found"),
])
def test_generic_csv_errors(tmp_path, content, match):
    path = tmp_path / 'log.csv'
    path.write_text(content)
    with pytest.raises(DataFormatError, match=match):
        read_delimited(str(path), 'user', 'item',
                       'r' if ',r' in content else None)


def test_movielens_1m_dat(tmp_path):
    (tmp_path / 'ratings.dat').write_text('1::1193::5::978300760\n'
                                          '2::661::3::978302109\n')
    (tmp_path / 'movies.dat').write_bytes(
        '1193::One Flew (1975)::Drama\n661::Pok\xe9 (1996)::Animation|'
        'Musical\n'.encode('latin-1'))
    raw = read_movielens(str(tmp_path))
    assert raw.user_ids == ['1', '2'] and raw.item_ids == ['1193', '661']
    assert read_movielens_titles(str(tmp_path), {'661'}) == {
        '661': 'Pok\xe9 (1996) Animation Musical'}
    with pytest.raises(DataFormatError, match='not a MovieLens ratings'):
        read_movielens(str(tmp_path / 'movies.dat'))


# Strict text: encodings, broken gzip, numbers ################################

def reviews_gz(n=3000):
    return gzip.compress(''.join(review(f'A{k}', f'B{k % 7}', 5.0, k) + '\n'
                                 for k in range(n)).encode())


@pytest.mark.parametrize('mangle,problem', [
    (lambda raw: raw[:len(raw) // 2], 'ended before the end-of-stream'),
    (lambda raw: raw[:2] + b'\x08\x00' + bytes(range(200)), ''),
    (lambda raw: raw[:2] + b'garbage, not deflate data', ''),
    (lambda raw: raw[:-8] + bytes(8), 'CRC check failed'),
])
def test_corrupt_gzip_named(tmp_path, mangle, problem):
    path = tmp_path / 'reviews.json.gz'
    path.write_bytes(mangle(reviews_gz()))
    with pytest.raises(DataFormatError, match=r'reviews\.json\.gz: corrupt '
                       rf'or truncated gzip file \(after line \d+: '
                       rf'.*{problem}'):
        read_amazon(str(path))


@pytest.mark.parametrize('gzipped', [False, True])
def test_invalid_utf8_refused_with_line(tmp_path, gzipped):
    content = (review('A1', 'B1') + '\n').encode() + \
        b'{"reviewerID": "A\xe9", "asin": "B2", "overall": 1, ' \
        b'"unixReviewTime": 3}\n'
    path = tmp_path / 'reviews.json'
    path.write_bytes(gzip.compress(content) if gzipped else content)
    with pytest.raises(DataFormatError, match=r"reviews\.json:2: not valid "
                       r"UTF-8 text \(byte 0xe9 at position 18"):
        read_amazon(str(path))


def test_invalid_utf8_in_csv_refused(tmp_path):
    path = tmp_path / 'log.csv'
    path.write_bytes(b'user,item\nu1,i1\nu\xff2,i1\n')
    with pytest.raises(DataFormatError, match=r'log\.csv:3: not valid UTF-8'):
        read_delimited(str(path), 'user', 'item')


@pytest.mark.parametrize('gzipped', [False, True])
def test_csv_utf8_bom_header(tmp_path, gzipped):
    content = '\ufeffuser,item,r\nu1,i1,2\nü2,i1,3\n'.encode('utf-8')
    path = tmp_path / 'log.csv'
    path.write_bytes(gzip.compress(content) if gzipped else content)
    raw = read_delimited(str(path), 'user', 'item', 'r')
    assert raw.user_ids == ['u1', 'ü2'] and raw.rating.tolist() == [2, 3]


@pytest.mark.parametrize('content,match', [
    ('user,item,t\nu1,i1,5\nu2,i1,noon\n', r"log\.csv:3: non-numeric time "
     r"'noon'"),
    ('user,item,t\nu1,i1,inf\n', r"log\.csv:2: time 'inf' is not a finite "
     r"number in the range of int64"),
    ('user,item,t\nu1,i1,1e30\n', r"log\.csv:2: time '1e30' is not a finite"),
    ('user,item,r\nu1,i1,nan\n', r"log\.csv:2: rating 'nan' is not a finite"),
    ('user,item,r\nu1,i1,1e300\n', r"log\.csv:2: rating '1e300' is not a "
     r"finite number in the range of float32"),
])
def test_bad_numbers_named(tmp_path, content, match):
    path = tmp_path / 'log.csv'
    path.write_text(content)
    columns = ('r', None) if ',r\n' in content else (None, 't')
    with pytest.raises(DataFormatError, match=match):
        read_delimited(str(path), 'user', 'item', *columns)


def test_amazon_time_not_numeric(tmp_path):
    path = tmp_path / 'reviews.json'
    path.write_text(review('A1', 'B1') + '\n' +
                    review('A1', 'B2', time='yesterday') + '\n')
    with pytest.raises(DataFormatError, match=r"reviews\.json:2: non-numeric "
                       r"time 'unixReviewTime' 'yesterday'"):
        read_amazon(str(path))


def test_csv_field_over_limit_named(tmp_path):
    path = tmp_path / 'log.csv'
    path.write_text('user,item\nu1,i1\n"' + 'x' * 200_000 + '",i2\n')
    with pytest.raises(DataFormatError, match=r'log\.csv:3: malformed '
                       r'delimited line \(field larger than field limit'):
        read_delimited(str(path), 'user', 'item')
