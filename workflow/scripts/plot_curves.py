import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from tlflow import logs, plots  # noqa: E402

logs.to_file(snakemake.log[0])
for metric in ("loss", "accuracy"):
    plots.curve(
        snakemake.input[0],
        metric,
        snakemake.output[metric],
        title=f"{snakemake.wildcards.backbone}: training and validation {metric}",
    )
