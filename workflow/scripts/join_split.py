from tlflow import features, logs, splits

logs.job(snakemake)
inputs, params = snakemake.input, snakemake.params
# Before anything is written: a split without a class must not look joined.
splits.check_classes(snakemake.wildcards.split, params.classes, inputs.manifests, inputs.skipped)
shards = list(zip(inputs.features, inputs.manifests, inputs.skipped, strict=True))
rows = features.join_shards(
    shards,
    out_labels=snakemake.output.labels,
    out_manifest=snakemake.output.manifest,
    out_skipped=snakemake.output.skipped,
    cache_dir=features.cache_folder(params.cache, params.spec, params.get("views")),
)
print(f"joined {len(shards)} shards into {rows} rows")
