"""Where the ``diffucoder`` distribution's packages come from; everything else is in pyproject.toml.

Two import packages, one distribution:
- ``diffucoder``, the library (src/diffucoder), which never imports kfp;
- ``diffucoder_kfp``, the Kubeflow Pipelines side: the repository's pipelines/ folder (the DAG, its
  build config, compile / run-local / submit / schedules and the ``diffucoder pipeline`` command)
  with components/ as its ``components`` subpackage. Its dependencies are the ``kfp`` extra
  (``pip install 'diffucoder[kfp]'``).

pyproject.toml's ``packages.find`` cannot add packages mapped from folders outside its search root,
hence this file.
"""

from setuptools import find_namespace_packages, setup

KFP_PACKAGES = {"diffucoder_kfp": "pipelines", "diffucoder_kfp.components": "components"}

setup(packages=[*find_namespace_packages("src"), *KFP_PACKAGES], package_dir={"": "src", **KFP_PACKAGES})
