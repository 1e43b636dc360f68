"""How much GRPO signal a model's rollouts carry: the reward spread of G completions per RL problem.

For each temperature, every problem gets G rollouts with the tiny preset's rollout settings and is
scored through a local sandbox server. A group whose G rewards are all equal has zero advantage and
gives no policy gradient, so the share of groups with reward variance, and of problems that fail on
every sample, tells whether coupled-GRPO has anything to learn from (BENCHMARKS.md `## grpo`).

    .venv/bin/python benchmarks/bench_reward_spread.py --model runs/tiny/<run>/instruct/final \
        --problems runs/tiny/data/<hash>/tasks/rl/train.jsonl --count 48 --temperatures 0.7,1.0,1.2 --group 8

Prints one JSON object: per temperature, mean pass rate, share of groups with reward variance,
share of problems where all / none of the G samples pass, distinct completions per group, format rate.
"""

from __future__ import annotations

import argparse
import collections
import json

import torch
from tqdm.auto import tqdm

from diffucoder.config import load_config
from diffucoder.model.io import load_model
from diffucoder.rl.advantages import varied_groups
from diffucoder.rl.data import load_problems
from diffucoder.rl.rewards import score_completions
from diffucoder.rl.rollout import generate_rollouts
from diffucoder.sandbox.client import SandboxClient
from diffucoder.sandbox.local import local_sandbox


def spread(model, tokenizer, problems, cfg, client, temperature: float, group: int, seed: int) -> dict:
    """Reward-spread statistics of ``group`` rollouts per problem at one temperature."""
    rollout = cfg.grpo.rollout.model_copy(update={"temperature": temperature})
    generator = torch.Generator().manual_seed(seed)
    passes, varied, distinct, formatted = [], 0, [], []
    for problem in tqdm(problems, desc=f"T={temperature}", leave=False):
        batch = generate_rollouts(model, tokenizer, [problem], group, rollout, cfg.decoding, generator)
        rewards = score_completions(batch.texts, [problem.tests] * group, client, cfg.sandbox)
        passes.append(int((rewards.code == 1.0).sum()))
        varied += len(varied_groups(rewards.total, group))
        distinct.append(len(set(batch.texts)))
        formatted.append(float((rewards.format == 1.0).float().mean()))
    counts = collections.Counter(passes)
    n = len(problems)
    return {
        "mean_pass_rate": sum(passes) / (group * n),
        "groups_with_reward_variance": varied / n,
        "problems_all_fail": counts[0] / n,
        "problems_all_pass": counts[group] / n,
        "mean_distinct_completions": sum(distinct) / n,
        "format_rate": sum(formatted) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained checkpoint dir (stage 3 or 4)")
    parser.add_argument("--problems", required=True, help="RL set JSONL/Parquet")
    parser.add_argument("--count", type=int, default=48, help="first N problems")
    parser.add_argument("--temperatures", default="0.7,1.0,1.2", help="comma-separated")
    parser.add_argument("--group", type=int, default=8, help="G rollouts per problem")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cfg = load_config("tiny")
    model, tokenizer = load_model(args.model)
    problems = load_problems(args.problems)[: args.count]
    result = {"problems": len(problems), "group": args.group}
    with local_sandbox(cfg.sandbox) as url, SandboxClient(url, cfg.sandbox) as client:
        for temperature in (float(t) for t in args.temperatures.split(",")):
            result[f"T={temperature}"] = spread(
                model, tokenizer, problems, cfg, client, temperature, args.group, args.seed
            )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
