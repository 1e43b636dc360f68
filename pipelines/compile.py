"""``make compile``: write the pipeline's IR YAML to pipelines/diffucoder.yaml (checked in).

The IR is a build output that reviewers read: a test recompiles it and fails when the checked-in
file is stale, so every DAG change shows up as a YAML diff.
"""

import argparse
import sys
from pathlib import Path

IR_PATH = Path(__file__).resolve().parent / "diffucoder.yaml"


def compile_pipeline(path: Path = IR_PATH) -> Path:
    from diffucoder_kfp.diffucoder import diffucoder
    from kfp import compiler

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.yaml")
    compiler.Compiler().compile(diffucoder, str(tmp))
    tmp.replace(path)  # atomic: a failed compile never leaves a half-written IR
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffucoder_kfp.compile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=IR_PATH)
    args = parser.parse_args(argv)
    print(compile_pipeline(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
