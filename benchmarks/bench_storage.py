"""Storage and tracking throughput on loopback servers; prints one JSON object to stdout.

Storage: ``put_dir`` / ``get_dir`` (parallel transfers, sha256 manifest, verification) against a
moto S3 server this script starts, with a baseline measured in the same run: a sequential loop
of plain boto3 ``put_object`` / ``get_object`` calls (no hashing, no manifest).

Tracking: ``Tracker.log_metrics`` (one ``log_batch`` per call) into a fresh SQLite store, with
mlflow's fluent ``mlflow.log_metric`` (one call per metric) as the baseline.

    .venv/bin/python benchmarks/bench_storage.py [--files 64] [--file-kib 512] [--big-mib 24]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    moto = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_storage(files: int, file_kib: int, big_mib: int, work: Path) -> list[dict]:
    import boto3

    from diffucoder import storage
    from diffucoder.config import StorageConfig

    proc, url = _start_moto()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=url,
        AWS_EC2_METADATA_DISABLED="true",
    )
    try:
        storage.configure(StorageConfig(multipart_chunk_mb=8, max_concurrency=8))
        src = work / "src"
        src.mkdir()
        for i in range(files):
            (src / f"shard-{i:04d}.bin").write_bytes(os.urandom(file_kib * 1024))
        (src / "model.safetensors").write_bytes(os.urandom(big_mib * 1024 * 1024))
        total_mb = (files * file_kib * 1024 + big_mib * 1024 * 1024) / 1e6
        client = boto3.client("s3")
        client.create_bucket(Bucket="bench")
        paths = sorted(p for p in src.iterdir())

        def baseline_put() -> None:
            for p in paths:
                client.put_object(Bucket="bench", Key=f"baseline/{p.name}", Body=p.read_bytes())

        def baseline_get() -> None:
            out = work / "baseline_out"
            out.mkdir()
            for p in paths:
                (out / p.name).write_bytes(
                    client.get_object(Bucket="bench", Key=f"baseline/{p.name}")["Body"].read()
                )

        storage.put_dir(src, "s3://bench/warmup")  # connection pools, imports
        results = []
        t_base_put = _timed(baseline_put)
        t_put = _timed(lambda: storage.put_dir(src, "s3://bench/ours"))
        t_base_get = _timed(baseline_get)
        t_get = _timed(lambda: storage.get_dir("s3://bench/ours", work / "ours_out"))
        for op, ours, base in (("put_dir", t_put, t_base_put), ("get_dir", t_get, t_base_get)):
            results.append(
                {
                    "metric": f"s3_{op}_throughput",
                    "value": round(total_mb / ours, 1),
                    "unit": "MB/s",
                    "seconds": round(ours, 3),
                    "baseline": "sequential boto3 put_object/get_object loop, no hashing",
                    "baseline_value": round(total_mb / base, 1),
                    "baseline_seconds": round(base, 3),
                    "speedup": round(base / ours, 2),
                }
            )
        return results
    finally:
        proc.terminate()
        proc.wait()


def bench_tracking(calls: int, work: Path) -> dict:
    import mlflow

    from diffucoder import tracking
    from diffucoder.config import load_config

    cfg = load_config("tiny", [f"tracking.tracking_uri=sqlite:///{work / 'mlflow.db'}"])
    metrics = {"loss": 1.0, "lr": 3e-4, "grad_norm": 0.5, "tokens_per_sec": 1e4, "step_time": 0.1}
    with tracking.stage_run("bench", cfg) as tr:
        tr.log_metrics(metrics, step=0)  # warm-up
        t_ours = _timed(lambda: [tr.log_metrics(metrics, step=s) for s in range(1, calls + 1)])
    mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    with mlflow.start_run():

        def fluent() -> None:
            for s in range(1, calls + 1):
                for k, v in metrics.items():
                    mlflow.log_metric(k, v, step=s)

        t_base = _timed(fluent)
    return {
        "metric": "log_metrics_latency_sqlite",
        "value": round(1000 * t_ours / calls, 2),
        "unit": "ms per 5-metric step",
        "baseline": "mlflow.log_metric per metric (fluent API)",
        "baseline_value": round(1000 * t_base / calls, 2),
        "speedup": round(t_base / t_ours, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--file-kib", type=int, default=512)
    parser.add_argument("--big-mib", type=int, default=24)
    parser.add_argument("--log-calls", type=int, default=200)
    args = parser.parse_args()
    from diffucoder.tracking import git_sha

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = bench_storage(args.files, args.file_kib, args.big_mib, work)
        results.append(bench_tracking(args.log_calls, work))
    print(
        json.dumps(
            {
                "name": "storage",
                "device": f"cpu ({os.cpu_count()} cores)",
                "config": vars(args),
                "metric": results[0]["metric"],
                "value": results[0]["value"],
                "unit": results[0]["unit"],
                "results": results,
                "git_sha": git_sha(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
