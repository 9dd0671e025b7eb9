import gzip
import json

import numpy as np
import pytest

from pyg_mmrec.data import DataFormatError
from pyg_mmrec.data.preprocess import (amazon_item_text, read_amazon,
                                       read_amazon_meta, read_delimited,
                                       read_movielens)
from pyg_mmrec.data.preprocess.raw import read_movielens_titles


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
    assert titles == {'242': 'Kolya (1996)', '303': 'Caf\xe9 (1997)'}


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
