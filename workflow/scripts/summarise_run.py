from tlflow import job_inputs, logs, summary

logs.job(snakemake)
splits = snakemake.params.splits
summary.summarise_run(
    head_meta=snakemake.input.meta,
    manifests=dict(zip(splits, snakemake.input.manifests)),
    skipped=dict(zip(splits, snakemake.input.skipped)),
    metrics_json=snakemake.input.metrics,
    audit_json=job_inputs.optional(snakemake.input, "audit"),
    out_html=snakemake.output[0],
    corrections=snakemake.params.corrections,
    corrections_csv=snakemake.config["corrections"],
    fine_tuned_meta=job_inputs.optional(snakemake.input, "fine_tuned_meta"),
    fine_tuned_metrics=job_inputs.optional(snakemake.input, "fine_tuned_metrics"),
)
