"""Kubernetes side of diffucoder: TrainJobs for multi-node stages, per-run sandbox services.

Library code here builds plain dicts (pure functions, testable offline against the CRD schemas)
and talks to the API server only through the official ``kubernetes`` client in the launchers.
"""
