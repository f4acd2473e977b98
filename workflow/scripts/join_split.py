import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from tlflow import features, logs  # noqa: E402

logs.to_file(snakemake.log[0])
files = list(snakemake.input)
shards = [tuple(files[i : i + 3]) for i in range(0, len(files), 3)]
rows = features.join_shards(
    shards,
    out_features=snakemake.output.features,
    out_labels=snakemake.output.labels,
    out_manifest=snakemake.output.manifest,
    out_skipped=snakemake.output.skipped,
)
print(f"joined {len(shards)} shards into {rows} rows")
