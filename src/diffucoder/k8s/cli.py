"""``diffucoder k8s``: run a training stage as a TrainJob, manage a run's sandbox service.

    diffucoder k8s trainjob --stage pretrain --data s3://.../packed --out s3://.../pretrain \
        --run-id $KFP_RUN_ID --config paper-7b [--render]
    diffucoder k8s sandbox up --run-id $KFP_RUN_ID      # prints the Service URL when ready
    diffucoder k8s sandbox down --run-id $KFP_RUN_ID

``--render`` prints the ConfigMap and TrainJob YAML without contacting a cluster. Otherwise the
command blocks until the job completes and exits non-zero with the job's reason when it fails;
SIGTERM (a cancelled pipeline run) deletes the job before exiting.
"""

from __future__ import annotations

import argparse
import signal
import sys

import yaml

from diffucoder import logs
from diffucoder.config import RunConfig, load_config
from diffucoder.config_cli import add_config_args
from diffucoder.k8s.config import STAGES, KubernetesConfig


def k8s_config(cfg: RunConfig) -> KubernetesConfig:
    """The run's ``k8s`` section, or the defaults while RunConfig does not compose one yet."""
    section = getattr(cfg, "k8s", None)
    return section if isinstance(section, KubernetesConfig) else KubernetesConfig()


def _trainjob(args: argparse.Namespace) -> int:
    from diffucoder.k8s.launcher import (
        TrainJobFailed,
        TrainJobLauncher,
        TrainJobTimeout,
        launch_trainjob,
        load_api_client,
    )
    from diffucoder.k8s.trainjob import StageJob, build_trainjob

    cfg = load_config(args.config, args.overrides)
    k8s = k8s_config(cfg)
    job = StageJob(
        stage=args.stage,
        data_uri=args.data,
        out_uri=args.out,
        run_id=args.run_id,
        init_uri=args.init,
        resume=args.resume,
        mlflow_run_id=args.mlflow_run_id,
        parent_run_id=args.parent_run_id,
    )
    objs = build_trainjob(job, cfg, k8s)
    if args.render:
        sys.stdout.write(yaml.safe_dump_all([objs.config_map, objs.trainjob], sort_keys=False))
        return 0
    _log_progress()
    # Argo stops a cancelled step with SIGTERM: turn it into KeyboardInterrupt so the job is deleted.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    launcher = TrainJobLauncher(load_api_client(args.kubeconfig), k8s.namespace, k8s.trainjob.poll_interval_s)
    try:
        outcome = launch_trainjob(objs, launcher, timeout_s=k8s.trainjob.timeout_s)
    except (TrainJobFailed, TrainJobTimeout) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"TrainJob {outcome.name} {outcome.state.phase} after {outcome.seconds:.0f}s")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from diffucoder.k8s.launcher import load_api_client
    from diffucoder.k8s.sandbox_deploy import SandboxDeployer

    _log_progress()
    deployer = SandboxDeployer(
        load_api_client(args.kubeconfig), k8s_config(load_config(args.config, args.overrides))
    )
    if args.action == "up":
        print(deployer.up(args.run_id))
    else:
        deployer.down(args.run_id)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("k8s", help="TrainJobs and per-run sandbox services on Kubernetes")
    sub = parser.add_subparsers(dest="k8s_command", required=True)

    tj = sub.add_parser("trainjob", help="run one training stage as a Kubeflow Trainer TrainJob")
    tj.add_argument("--stage", required=True, choices=STAGES)
    tj.add_argument("--data", required=True, help="training data URI")
    tj.add_argument("--out", required=True, help="output URI of the stage")
    tj.add_argument("--run-id", required=True, help="pipeline run id (names and labels the job)")
    tj.add_argument("--init", default=None, help="model to start from (previous stage's final/)")
    tj.add_argument("--resume", default="auto", help="auto | none | CKPT_URI")
    tj.add_argument("--mlflow-run-id", default=None, help="the stage's MLflow run, resumed by the trainer")
    tj.add_argument("--parent-run-id", default=None, help="the pipeline's parent MLflow run")
    tj.add_argument("--render", action="store_true", help="print the YAML instead of submitting")
    tj.set_defaults(func=_trainjob)

    sb = sub.add_parser("sandbox", help="create or delete a pipeline run's sandbox Deployment + Service")
    sb.add_argument("action", choices=["up", "down"])
    sb.add_argument("--run-id", required=True)
    sb.set_defaults(func=_sandbox)

    for p in (tj, sb):
        p.add_argument(
            "--kubeconfig", default=None, help="default: in-cluster, else $KUBECONFIG / ~/.kube/config"
        )
        add_config_args(p)


def _log_progress() -> None:
    logs.configure()
