"""Containment checks: must pass before any bomb runs (the bombs also depend on the session gate)."""

from __future__ import annotations

from sandbox_helpers import containment_facts, nproc_bound


def test_code_runs_as_unprivileged_uid_with_binding_limits(client, sandbox_cfg, sandbox_server):
    facts = containment_facts(client)
    assert facts["uid"] != 0 and facts["euid"] != 0 and facts["gid"] != 0
    # no group beyond its own (in the pod: the fsGroup, which is the image's gid)
    assert set(facts["groups"]) <= {facts["gid"]}
    assert facts["nproc"] <= nproc_bound(client, sandbox_cfg, sandbox_server.place)
    assert facts["seccomp"] == "2" and facts["no_new_privs"] == "1"
    # stdin, stdout, stderr, the result pipe and the directory listdir opened: no descriptor of the
    # executor's (its landlock rules hold one per runtime path) reaches the code
    assert facts["fds"] == [0, 1, 2, 3, 4]


def test_healthz_reports_active_layers(client, sandbox_server):
    """Every layer on the host; in the pod's security context, every layer but bubblewrap, which
    cannot create namespaces under the RuntimeDefault seccomp profile without CAP_SYS_ADMIN."""
    health = client.health()
    assert health["mandatory_layers_active"] is True and health["insecure_dev"] is False
    for layer in (
        "unprivileged_uid",
        "seccomp_no_network",
        "rlimits",
        "nproc_binds",
        "subreaper",
        "landlock_fs",
        "private_tmp",
        "empty_env",
        "runtime_readable",
    ):
        assert health["layers"][layer] is True, layer
    assert health["layers"]["bubblewrap"] is (sandbox_server.place == "host")
