from tlflow import logs, summary

logs.job(snakemake)
splits = snakemake.params.splits
summary.summary_html(
    head_meta=snakemake.input.meta,
    manifests=dict(zip(splits, snakemake.input.manifests)),
    skipped=dict(zip(splits, snakemake.input.skipped)),
    metrics_json=snakemake.input.metrics,
    audit_json=snakemake.input.audit[0] if snakemake.input.audit else None,
    out_html=snakemake.output[0],
    corrections=snakemake.params.corrections,
    corrections_csv=snakemake.config["corrections"],
    **dict(zip(("fine_tuned_meta", "fine_tuned_metrics"), snakemake.input.fine_tuned)),
)
