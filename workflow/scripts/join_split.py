from tlflow import features, logs

logs.to_file(snakemake.log[0])
inputs = snakemake.input
params = snakemake.params
shards = list(zip(inputs.features, inputs.manifests, inputs.skipped, strict=True))
rows = features.join_shards(
    shards,
    out_features=snakemake.output.features,
    out_labels=snakemake.output.labels,
    out_manifest=snakemake.output.manifest,
    out_skipped=snakemake.output.skipped,
    cache_dir=features.cache_folder(params.cache, params.spec, params.get("views")),
)
print(f"joined {len(shards)} shards into {rows} rows")
