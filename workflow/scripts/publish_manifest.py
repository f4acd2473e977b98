import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from tlflow import logs, manifest  # noqa: E402

logs.to_file(snakemake.log[0])
manifest.publish(snakemake.input[0], snakemake.output[0])
print(f"{snakemake.output[0]}: {snakemake.params.images} images")
