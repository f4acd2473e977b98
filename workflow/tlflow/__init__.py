"""tlflow: transfer learning on image folders, the code behind the Snakemake rules.

Never imports snakemake; heavy libraries (keras) are imported only where needed,
so bookkeeping steps start in a fraction of a second. Installed as a package
(pyproject.toml), whose version is the workflow's.
"""

from importlib.metadata import version

__version__ = version("tlflow")
