from tlflow import features, logs

logs.job(snakemake)
inputs, params = snakemake.input, snakemake.params
shards = list(zip(inputs.features, inputs.manifests, inputs.skipped, strict=True))
counts = features.join_split(
    shards,
    inputs.labels,
    out_labels=snakemake.output.labels,
    out_manifest=snakemake.output.manifest,
    out_skipped=snakemake.output.skipped,
    cache_dir=features.cache_folder(params.cache, params.spec, params.get("views")),
    split=snakemake.wildcards.split,
    multi_label=params.multi_label,
)
print(
    f"joined {len(shards)} shards into {counts['rows']} rows; left out "
    f"{counts['excluded']} image(s) excluded by corrections, {counts['skipped']} undecodable"
)
