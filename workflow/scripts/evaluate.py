from tlflow import evaluate, job_inputs, logs

logs.job(snakemake)
evaluate.evaluate(
    shards=snakemake.input[f"{snakemake.params.split}_rows"],
    labels_npy=snakemake.input.labels,
    manifest_csv=snakemake.input.manifest,
    head_model=snakemake.input.head,
    head_meta=snakemake.input.meta,
    split=snakemake.params.split,
    out_predictions=snakemake.output.predictions,
    out_metrics=snakemake.output.metrics,
    out_confusion=snakemake.output.confusion,
    out_reliability=snakemake.output.reliability,
    threads=snakemake.threads,
    views=job_inputs.optional(snakemake.input, "views", "views_manifest"),
)
