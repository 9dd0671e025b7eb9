"""Command line: ``python -m pyg_mmrec {train,tune,datasets,models,demo,
preprocess,report,recommend}``."""
import argparse
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional

log = logging.getLogger('pyg_mmrec')


def parse_overrides(tokens: List[str]) -> Dict[str, Any]:
    r"""Turns :obj:`['--reg-weight', '1e-4', '--model.num_layers', '2']`
    into :obj:`{'reg_weight': 1e-4, 'model.num_layers': 2}` (values parsed
    as YAML; a dotted key names its section)."""
    from .config import parse_value
    out: Dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith('--') or len(tok) < 3:
            raise ValueError(f"expected --key value, got {tok!r}")
        key, eq, value = tok[2:].partition('=')
        if not eq:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith('--'):
                raise ValueError(f"--{key} needs a value")
            value = tokens[i + 1]
            i += 1
        out[key.replace('-', '_')] = parse_value(value)
        i += 1
    return out


def build_parser() -> argparse.ArgumentParser:
    from .experiment import add_run_arguments
    parser = argparse.ArgumentParser(
        prog='python -m pyg_mmrec',
        description='Multimodal recommendation on PyTorch Geometric.',
        epilog='exit codes: 0 done; 2 bad input (the message names the '
        'file or argument and the problem); 3 training diverged (a loss '
        'or score that is not finite); 130 interrupted (resume with '
        '--resume)')
    sub = parser.add_subparsers(dest='command', required=True)
    # Every command takes --threads.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        '--threads', type=int, default=None, metavar='N',
        help="PyTorch's CPU threads (default: $OMP_NUM_THREADS, else one "
        "per core). Its kernels spin-wait: on a machine shared with other "
        "jobs use 1 (or the cores that are free), or runs get many times "
        "slower")
    add_parser = sub.add_parser
    sub.add_parser = lambda *a, **kw: add_parser(*a, parents=[common], **kw)

    train = sub.add_parser(
        'train', help='train and evaluate a model',
        description='Train a model, select the epoch on validation Recall@20 '
        '(early stopping, patience 20) and report the test metrics at that '
        'epoch. Settings, lowest precedence first: the defaults < the '
        "model's own trainer defaults < the YAML file (--config, by default "
        'experiments/configs/<dataset>.yaml in the current directory, else '
        "the one shipped with the package (pyg_mmrec/config/datasets/), "
        "when it has a section for the model; the line "
        "'config: ...' says which) < the command line. Any further --key "
        'value pair sets a setting (e.g. --lr 5e-4 --num-layers 2; '
        '--model.KEY / --trainer.KEY / --loader.KEY / --evaluation.KEY name '
        'the section; --test-masks train masks only the training items at '
        'test, as MMRec and DiffMM do; --test-masks train_val,train records '
        "both). 'python -m pyg_mmrec models MODEL' lists a model's settings. "
        'The effective settings are printed at the start and recorded in '
        'results.json.')
    add_run_arguments(
        train, config_help='YAML settings: one mapping per model with the '
        'sections model, trainer, loader, evaluation (default: '
        "experiments/configs/<dataset>.yaml here, else the package's "
        "pyg_mmrec/config/datasets/<dataset>.yaml, if it has the model; "
        "'none': the model's defaults)")
    train.add_argument('--seed', type=int, default=0)
    train.add_argument('--device', default='cpu')
    train.add_argument('--select-on', choices=['val', 'test'], default=None,
                       help="'test' only reproduces papers that pick the "
                       "epoch on the test set; labelled in every output "
                       "(default: the configuration's trainer.select_on, "
                       "else 'val')")
    train.add_argument('--output-dir', default=None,
                       help='checkpoints and results.json (default: '
                       'runs/<model>-<dataset>-seed<seed>)')
    train.add_argument('--resume', action='store_true',
                       help='continue an interrupted run from '
                       '--output-dir/last.pt (without one: a warning, and '
                       'the run starts at epoch 1)')
    train.add_argument('--no-progress', action='store_true')
    train.add_argument('--tensorboard', default=None, metavar='DIR',
                       help='TensorBoard scalars per epoch (losses, '
                       'metrics) in DIR (pip install tensorboard)')

    from .tune.cli import add_parser as add_tune_parser
    add_tune_parser(sub)
    datasets = sub.add_parser(
        'datasets', help='list datasets and statistics',
        description='List the datasets under the data root with their '
        'statistics; a folder not processed yet is listed by name and '
        'layout only, unless --stats processes it (once: it is cached).')
    datasets.add_argument('--data-root', default=None)
    datasets.add_argument('--stats', action='store_true',
                          help='process the folders not processed yet to '
                          'show their statistics too')

    models = sub.add_parser(
        'models', help="list the models, or one model's settings",
        description="Without a name: the registered models. With one: its "
        "settings by section (model, trainer, loader, evaluation), each "
        "with its default and one line of help.")
    models.add_argument('name', nargs='?', default=None, metavar='MODEL')

    pre = sub.add_parser(
        'preprocess', help='turn raw logs into an MMRec dataset folder',
        description='Read a raw log (Amazon reviews 2014/2018, MovieLens, '
        'generic CSV; streaming, .gz detected), keep ratings >= '
        '--min-rating, collapse duplicate pairs to the earliest, iterative '
        'k-core, re-index by first appearance, split per user and write '
        '<output>/<name>.inter, u_id_mapping.csv, i_id_mapping.csv, '
        'stats.json and optional text_feat.npy / image_feat.npy.')
    pre.add_argument('--format', required=True,
                     choices=['amazon', 'movielens', 'csv'])
    pre.add_argument('--input', required=True,
                     help='raw file (MovieLens: file or folder)')
    pre.add_argument('--meta', default=None,
                     help='item metadata for --text-features (Amazon '
                     'meta_*.json(.gz); MovieLens: default beside --input)')
    pre.add_argument('--output', required=True, help='dataset folder')
    pre.add_argument('--name', default=None,
                     help='dataset name (default: the output folder name)')
    pre.add_argument('--min-rating', type=float, default=0.0)
    pre.add_argument('--user-core', type=int, default=5)
    pre.add_argument('--item-core', type=int, default=5)
    pre.add_argument('--split', choices=['random', 'chrono', 'loo'],
                     default='random')
    pre.add_argument('--seed', type=int, default=0)
    pre.add_argument('--user-col', default='user', help='csv format')
    pre.add_argument('--item-col', default='item', help='csv format')
    pre.add_argument('--rating-col', default=None, help='csv format')
    pre.add_argument('--time-col', default=None, help='csv format')
    pre.add_argument('--delimiter', default=',', help='csv format')
    pre.add_argument('--text-features', action='store_true',
                     help="all-MiniLM-L6-v2 text features (extra 'text')")
    pre.add_argument('--text-model', default=None,
                     help='local sentence-transformers folder (default: '
                     'the bundled all-MiniLM-L6-v2)')
    pre.add_argument('--images', default=None,
                     help="folder of <raw item id>.jpg|png (extra 'image')")
    pre.add_argument('--image-backbone', default='resnet50',
                     help="torchvision model, or 'export': --image-weights "
                     "is then a torch.export file (no torchvision needed)")
    pre.add_argument('--image-weights', default=None,
                     help='state dict file of the backbone')
    pre.add_argument('--item-features', action='append', default=[],
                     metavar='MODALITY=FILE',
                     help='precomputed item features keyed by raw item id '
                     '(Amazon image_features_*.b, or text lines "<id> v1 '
                     '... vd"), written as <MODALITY>_feat.npy; repeatable')
    pre.add_argument('--no-progress', action='store_true')

    demo = sub.add_parser('demo', help='train every baseline on the synthetic '
                          'dataset and print a comparison table')
    demo.add_argument('--output', default=None, help='write the table as JSON')

    report = sub.add_parser(
        'report', help='tables, curves and bar charts of finished runs, '
        'or of a tune study',
        description='Group runs by dataset, model variant (the settings in '
        'which runs of a model differ) and protocol; write report.md (test '
        'metrics at the selected epoch, mean ± std over seeds; the sampled '
        'protocol in tables of its own), report.json and PNG curves and bar '
        'charts. Given one study folder of tune: trials.md (the trials '
        'table), the best-so-far curve and the parameter importances.')
    report.add_argument('runs', nargs='+', metavar='RUN_DIR',
                        help='run directories (with results.json), folders '
                        'of them, or glob patterns')
    report.add_argument('--output', default='report',
                        help='output folder (default: report/)')

    from .recommend.cli import add_parser as add_recommend_parser
    add_recommend_parser(sub)
    return parser


def cmd_train(args, overrides: Dict[str, Any]) -> int:
    r"""Trains one model; under ``torchrun`` every process trains its shard
    (:mod:`pyg_mmrec.train.distributed`) and only rank 0 prints and
    writes."""
    from .train import distributed
    device = distributed.init_from_env(args.device)
    try:
        if not distributed.is_main_process():
            log.setLevel(logging.WARNING)
        return _train(args, overrides, device,
                      say=print if distributed.is_main_process() else
                      _silent)
    finally:
        distributed.destroy()


def _silent(*args, **kwargs) -> None:
    pass


def _train(args, overrides: Dict[str, Any], device: str, say) -> int:
    from .experiment import (
        check_output_folder,
        config_for,
        format_results_table,
        run_experiment,
    )
    from .models import get_model
    from .train import distributed
    model = get_model(args.model).cli_name  # an unknown model fails first
    config = config_for(args, model, say)
    config.update(overrides)
    if args.select_on is not None:
        config['select_on'] = args.select_on
    out = args.output_dir or os.path.join(
        'runs', f'{model}-{os.path.basename(os.path.normpath(args.dataset))}'
        f'-seed{args.seed}')
    check_output_folder(out, '--output-dir')
    callbacks = []
    if args.tensorboard and distributed.is_main_process():
        from .train.tensorboard import TensorBoardScalars
        callbacks.append(TensorBoardScalars(args.tensorboard))
    try:
        results = run_experiment(model, args.dataset, args.data_root,
                                 config, seed=args.seed, device=device,
                                 output_dir=out, resume=args.resume,
                                 progress=not args.no_progress,
                                 callbacks=callbacks)
    except KeyboardInterrupt:
        say(f"\ninterrupted; the last finished epoch is saved in "
            f"{out}/last.pt: rerun the same command with --resume to "
            f"continue", file=sys.stderr)
        return 130
    say(format_results_table(results))
    say(f"time per epoch {results['time_per_epoch']:.2f}s | evaluation "
        f"{results['eval_time']:.2f}s | peak memory "
        f"{results['peak_memory_mb']:.0f} MiB | results: {out}/results.json")
    return 0


def cmd_datasets(args) -> int:
    from .data import available_datasets, dataset_statistics, load_dataset
    from .data.dataset import default_root, is_processed
    from .data.readers import detect_format
    root = args.data_root or default_root()
    print(f"data root: {root}")
    print(f"{'name':<12}{'users':>8}{'items':>8}{'train':>9}{'val':>8}"
          f"{'test':>8}{'density':>10}  modalities")
    for name in available_datasets(root):
        if name == 'synthetic':  # built in, not a folder of the root
            print(f"{'synthetic':<12}(built in, generated on first use; not "
                  f"in {root})")
            continue
        try:
            if not (args.stats or is_processed(name, root)):
                layout = detect_format(os.path.join(root, name))
                print(f"{name:<12}({layout} layout, not processed yet: "
                      f"--stats or its first run processes it)")
                continue
            s = dataset_statistics(load_dataset(name, root=root))
        except Exception as e:  # report and go on with the others
            print(f"{name:<12}cannot be read: {e}")
            continue
        mods = ', '.join(f'{m} {d}-d' for m, d in s['modalities'].items())
        print(f"{name:<12}{s['users']:>8}{s['items']:>8}{s['train']:>9}"
              f"{s['val']:>8}{s['test']:>8}{s['density']:>10.5f}  "
              f"{mods or 'none'}")
    return 0


def _modality_files(pairs: List[str]) -> Dict[str, str]:
    out = {}
    for pair in pairs:
        modality, sep, path = pair.partition('=')
        if not sep or not modality or not path:
            raise ValueError(f"--item-features expects MODALITY=FILE, got "
                             f"{pair!r}")
        if modality in out:
            raise ValueError(f"--item-features: {modality!r} given twice")
        out[modality] = path
    return out


def cmd_preprocess(args) -> int:
    from .data.preprocess import preprocess
    csv_kwargs = {}
    if args.format == 'csv':
        delimiter = args.delimiter.replace('\\t', '\t')
        csv_kwargs = dict(user_col=args.user_col, item_col=args.item_col,
                          rating_col=args.rating_col, time_col=args.time_col,
                          delimiter=delimiter)
    try:
        stats = preprocess(
            args.format, args.input, args.output, name=args.name,
            meta=args.meta, min_rating=args.min_rating,
            user_core=args.user_core, item_core=args.item_core,
            split=args.split, seed=args.seed, text=args.text_features,
            text_model=args.text_model, images=args.images,
            image_backbone=args.image_backbone,
            image_weights=args.image_weights,
            item_features=_modality_files(args.item_features),
            progress=not args.no_progress, **csv_kwargs)
    except ImportError as e:  # a missing optional extra
        raise ValueError(str(e)) from None
    print(f"{stats['name']}: {stats['users']} users, {stats['items']} items,"
          f" {stats['interactions']} interactions (train {stats['train']}, "
          f"val {stats['val']}, test {stats['test']}), density "
          f"{stats['density']:.5f}")
    print(f"raw lines {stats['raw_lines']}, after rating threshold "
          f"{stats['kept_after_threshold']}, duplicates removed "
          f"{stats['duplicates_removed']}, after k-core "
          f"{stats['kept_after_k_core']} ({stats['k_core_rounds']} rounds)")
    print(f"written to {args.output} (stats.json)")
    return 0


def cmd_models(name: Optional[str] = None) -> int:
    from .models import MODELS
    if name is not None:
        from .config import format_settings_help
        from .models import get_model
        cls = get_model(name)
        print(f"{cls.cli_name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        print(format_settings_help(name))
        return 0
    for name, cls in MODELS.items():
        doc = (cls.__doc__ or '').strip().splitlines()[0]
        print(f"{name:<10} {doc}")
    return 0


def cmd_report(args) -> int:
    from .experiment import check_output_folder
    from .report import find_runs, format_markdown, write_report
    from .tune.report import is_study, write_study_report
    check_output_folder(args.output, '--output')
    if len(args.runs) == 1 and is_study(args.runs[0]):
        report = write_study_report(args.runs[0], args.output)
        print(report['text'])
        print(f"written to {args.output}/: {', '.join(report['files'])}")
        return 0
    report = write_report(find_runs(args.runs), args.output)
    print(format_markdown(report['tables']))
    print(f"written to {args.output}/: {', '.join(report['files'])}")
    return 0


#: Exit codes: bad input (a file, an argument, a setting) and a run that
#: diverged.
EXIT_USAGE, EXIT_DIVERGED = 2, 3


def describe_error(error: BaseException) -> str:
    r"""The message of a user's error: the file and the problem."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs the command line; returns the exit code: 0, or
    :obj:`EXIT_USAGE` with one line :obj:`error: <file or argument>:
    <problem>` for any bad input (never a traceback), or
    :obj:`EXIT_DIVERGED` when training diverged."""
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ('train', 'tune'):
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        import torch
        torch.set_num_threads(args.threads)
    from .train.divergence import TrainingDiverged
    try:
        if args.command == 'train':
            return cmd_train(args, parse_overrides(rest))
        if args.command == 'tune':
            from .tune.cli import cmd_tune
            return cmd_tune(args, parse_overrides(rest))
        if args.command == 'datasets':
            return cmd_datasets(args)
        if args.command == 'models':
            return cmd_models(args.name)
        if args.command == 'preprocess':
            return cmd_preprocess(args)
        if args.command == 'report':
            return cmd_report(args)
        if args.command == 'recommend':
            from .recommend.cli import cmd_recommend
            return cmd_recommend(args)
        if args.command == 'demo':
            from .demo import format_comparison, run_demo
            title, rows = run_demo()
            print(format_comparison(rows, title))
            if args.output:
                with open(args.output, 'w') as f:
                    json.dump(rows, f, indent=1)
            return 0
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except (ValueError, OSError, EOFError) as e:
        # OSError: a missing or unreadable file, a full disk (named).
        print(f"error: {describe_error(e)}", file=sys.stderr)
        return EXIT_USAGE
    return 1
