"""Platform operations: the cost and memory planner, cost per run, candidate/champion promotion."""
