from tlflow import audit, logs

logs.job(snakemake)
inputs = snakemake.input
audit.audit(
    splits={
        split: (inputs[f"{split}_rows"], labels, manifest)
        for split, labels, manifest in zip(
            snakemake.params.splits, inputs.labels, inputs.manifests, strict=True
        )
    },
    classes=snakemake.params.classes,
    out_suspects=snakemake.output.suspects,
    out_duplicates=snakemake.output.duplicates,
    out_embedding=snakemake.output.embedding,
    out_summary=snakemake.output.summary,
    folds=snakemake.params.folds,
    similarity=snakemake.params.similarity,
    neighbours=snakemake.params.neighbours,
    search=snakemake.params.search,
    projection=snakemake.params.projection,
    threads=snakemake.threads,
    storage=snakemake.params.spec["features"],
    probe_rows=snakemake.params.probe_rows,
)
