"""tlflow: transfer learning on image folders, the code behind the Snakemake rules.

Never imports snakemake; heavy libraries (keras) are imported only where needed,
so bookkeeping steps start in a fraction of a second. Installed as a package
(pyproject.toml), whose version is the workflow's.
"""

import os
from importlib.metadata import version

__version__ = version("tlflow")

# TensorFlow takes GPU memory as it needs it rather than all of it at start, so
# two jobs can share one GPU (a setting it reads when it first uses a GPU; set
# TF_FORCE_GPU_ALLOW_GROWTH=false to have it take all).
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
