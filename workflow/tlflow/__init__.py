"""tlflow: transfer learning on image folders, the code behind the Snakemake rules.

Never imports snakemake; heavy libraries (keras) are imported only where needed,
so bookkeeping steps start in a fraction of a second.
"""
