r"""``python -m pyg_mmrec tune``: the command line of :mod:`pyg_mmrec.tune`."""
import os
import os.path as osp
from typing import Any, Dict

from ..experiment import add_run_arguments
from .study import PRUNERS

DESCRIPTION = (
    'Search hyper-parameters on the validation split (Optuna, TPE sampler; '
    'an MMRec grid runs exhaustively), pruning hopeless trials, then '
    're-train the best settings with --final-seeds seeds and report their '
    'test metrics once (mean +- std). No test metric is computed during '
    'the search. Several tune processes with the same --output-dir, '
    '--storage and --study share one study (on one machine: the default '
    'journal file; on several: an RDB URL such as postgresql://...); '
    'rerunning an interrupted command continues its study, its '
    'interrupted trials and final runs from their last epoch. Any further '
    '--key value pair fixes a setting in every trial (as for train). '
    "Writes <output-dir>/study.json, trials/trial-NNNN/{results,trial}.json, "
    "final.json and best.yaml (a section for experiments/configs/"
    "<dataset>.yaml); 'python -m pyg_mmrec report <output-dir>' tabulates "
    'and plots the study.')


def add_parser(sub) -> None:
    r"""Adds the :obj:`tune` sub-command to :obj:`sub`."""
    p = sub.add_parser('tune', help='hyper-parameter search on validation',
                       description=DESCRIPTION)
    add_run_arguments(
        p, config_help='YAML settings under the search (as for train; '
        "default: experiments/configs/<dataset>.yaml here, else the "
        "package's pyg_mmrec/config/datasets/<dataset>.yaml, if it has the "
        "model; 'none': the defaults)")
    p.add_argument('--space', default=None,
                   help="search space YAML (ours, or MMRec's "
                   "hyper_parameters grid; default: the model's shipped "
                   'space, pyg_mmrec/tune/spaces/<model>.yaml)')
    p.add_argument('--trials', type=int, default=20,
                   help='trials of the study, all workers together '
                   '(default: 20; a grid: at most its combinations)')
    p.add_argument('--storage', default=None,
                   help='Optuna storage: a journal file path (default: '
                   '<output-dir>/journal.log), sqlite:///FILE, or an RDB '
                   'URL shared by workers on several machines')
    p.add_argument('--study', default=None,
                   help='study name (default: <model>-<dataset>)')
    p.add_argument('--pruner', choices=PRUNERS, default='median',
                   help='stop hopeless trials early (default: median)')
    p.add_argument('--final-seeds', type=int, default=3,
                   help='seeds of the final runs of the best settings '
                   '(default: 3; 0: none)')
    p.add_argument('--output-dir', default=None,
                   help='the study folder (default: runs/tune-<model>-'
                   '<dataset>)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the trials and of the sampler')
    p.add_argument('--device', default='cpu')
    p.add_argument('--keep-checkpoints', action='store_true',
                   help="keep each trial's best.pt and last.pt")
    p.add_argument('--tensorboard', default=None, metavar='DIR',
                   help='TensorBoard scalars of every run (losses, '
                   'validation metrics; test in the final runs) under DIR/'
                   'trial-NNNN and DIR/final-seedK (pip install tensorboard)')
    p.add_argument('--fail-running', action='store_true',
                   help='first mark every running trial failed and '
                   'release the final runs: those of a worker on a machine '
                   'that is gone (on this machine an interrupted worker\'s '
                   'are anyway); they continue from their last epoch; no '
                   'other worker may be running')


def cmd_tune(args, overrides: Dict[str, Any]) -> int:
    from ..data import load_dataset
    from ..experiment import check_output_folder, config_for
    from .space import load_space
    from .study import run_study
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ValueError("tune needs Optuna: pip install 'optuna>=4.5'"
                         ) from None
    if args.final_seeds < 0:
        raise ValueError(f"--final-seeds must be >= 0, got "
                         f"{args.final_seeds}")
    space = load_space(args.model, args.space)
    space.fix(overrides)  # the command line wins over the search
    base = config_for(args, space.model, print)
    out = args.output_dir or osp.join(
        'runs', f'tune-{space.model}-'
        f'{osp.basename(osp.normpath(args.dataset))}')
    check_output_folder(out, '--output-dir')
    data = load_dataset(args.dataset, root=args.data_root)
    try:
        summary = run_study(space, data, args.dataset, out, args.trials,
                            base, args.storage, args.study, args.pruner,
                            args.final_seeds, args.seed, args.device,
                            args.keep_checkpoints, args.fail_running,
                            args.tensorboard)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the study is kept in {out}: rerun the same "
              f"command to continue it")
        return 130
    print(f"study {summary['study']} in {out}: {summary['complete']} "
          f"complete, {summary['pruned']} pruned, {summary['running']} "
          f"running ({summary['ran_here']} run here)")
    final = summary['final']
    if final is None:
        print("final runs: not yet (trials still running elsewhere, or "
              "--final-seeds 0); rerun the command when they have ended")
        return 0
    metric = final['metric']
    test = final['test'][metric]
    print(f"best trial {final['best_trial']}: {final['params']} "
          f"(validation {metric} {final['val']:.4f})")
    print(f"test {metric} over {final['seeds']} seeds: {test['mean']:.4f} "
          f"+- {test['std']:.4f}; settings: {os.path.join(out, 'best.yaml')}")
    return 0
