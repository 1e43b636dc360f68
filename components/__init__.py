"""KFP lightweight components, one per pipeline step; each is a thin wrapper over diffucoder.steps.

Installed as ``diffucoder_kfp.components`` (setup.py), the DAG in ``diffucoder_kfp.diffucoder`` imports them.

Why lightweight components with ``install_kfp_package=False``: our images already carry kfp and
the diffucoder package, so a pod starts without any pip install (``packages_to_install`` empty), and
``kfp.local``'s SubprocessRunner can run every step in the current interpreter. The function
bodies import the library inside themselves because KFP ships only the function's source.
"""
