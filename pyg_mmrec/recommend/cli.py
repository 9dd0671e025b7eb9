r"""``python -m pyg_mmrec recommend``: the command line of
:mod:`pyg_mmrec.recommend`."""
import os

from . import (
    EXCLUDES,
    INDEXES,
    format_recommendations,
    recommend,
    recommendation_batches,
    write_recommendations,
)


def add_parser(sub) -> None:
    r"""Adds the :obj:`recommend` sub-command to :obj:`sub`."""
    rec = sub.add_parser(
        'recommend', help="top-K items per user from a finished run",
        description="Rebuild a run's model from its results.json, load "
        "best.pt (else last.pt) and write each user's top-K items (CSV, or "
        "JSON for a .json --output, streamed in batches of users; CSV on "
        "stdout without --output), with the original ids when the dataset "
        "folder has u_id_mapping.csv / i_id_mapping.csv and the item titles "
        "when it has item_meta.csv (both written by preprocess).")
    rec.add_argument('--run', required=True, metavar='RUN_DIR')
    who = rec.add_mutually_exclusive_group(required=True)
    who.add_argument('--users', default=None,
                     help='comma-separated dataset user ids, e.g. 3,17')
    who.add_argument('--raw-users', default=None,
                     help='comma-separated original user ids (through the '
                     "dataset's u_id_mapping.csv), e.g. A1B2C3,X9Y8")
    who.add_argument('--all-users', action='store_true')
    rec.add_argument('--k', type=int, default=20)
    rec.add_argument('--exclude', default='train',
                     choices=EXCLUDES,
                     help="never recommend a user's training items (train, "
                     "the default), every item it interacted with in any "
                     "split (known), or nothing (none)")
    rec.add_argument('--data-root', default=None,
                     help='folder holding the datasets (default: '
                     '$PYG_MMREC_DATA or datasets/)')
    rec.add_argument('--dataset', default=None,
                     help="dataset name or folder instead of the run's")
    rec.add_argument('--device', default='cpu')
    rec.add_argument('--batch-size', type=int, default=1024)
    rec.add_argument('--index', default='exact', choices=INDEXES,
                     help='exact: rank every item; ivf: an approximate '
                     'inner-product index (faiss; for millions of items)')
    rec.add_argument('--nprobe', type=int, default=16,
                     help='lists scanned per query with --index ivf')
    rec.add_argument('--output', default=None, metavar='FILE.csv|FILE.json')


def cmd_recommend(args) -> int:
    users = raw_users = None
    if args.users is not None:
        try:
            users = [int(u) for u in args.users.split(',') if u.strip()]
        except ValueError:
            raise ValueError(f"--users expects comma-separated integer ids, "
                             f"got {args.users!r}") from None
    elif args.raw_users is not None:
        raw_users = [u.strip() for u in args.raw_users.split(',')
                     if u.strip()]
    if args.output and os.path.isdir(args.output):
        raise ValueError(f"--output {args.output}: is a folder; give a "
                         f"FILE.csv or FILE.json")
    kwargs = dict(k=args.k, exclude=args.exclude, data_root=args.data_root,
                  dataset=args.dataset, batch_size=args.batch_size,
                  device=args.device, raw_users=raw_users,
                  index=args.index, nprobe=args.nprobe)
    if args.output:
        count = write_recommendations(
            recommendation_batches(args.run, users, **kwargs), args.output)
        print(f"{count} users x top-{args.k}: {args.output}")
    else:
        print(format_recommendations(recommend(args.run, users, **kwargs)),
              end='')
    return 0
