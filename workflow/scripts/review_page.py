from tlflow import job_inputs, logs, review

logs.job(snakemake)
inputs = snakemake.input
shown = review.review_page(
    inputs.suspects,
    inputs.duplicates,
    inputs.embedding,
    snakemake.params.data_dir,
    snakemake.params.classes,
    snakemake.output[0],
    title=f"{snakemake.wildcards.backbone}: review the audit",
    corrections_csv=job_inputs.optional(inputs, "corrections"),
)
print(f"review page: {shown}")
