from tlflow import head, job_inputs, logs

logs.job(snakemake)
head.train_head(
    features={
        split: tuple(snakemake.input[f"{split}{part}"] for part in ("", "_rows", "_labels"))
        for split in ("train", "validation")
    },
    settings=snakemake.params.settings,
    meta=snakemake.params.meta,
    threads=snakemake.threads,
    outputs=snakemake.output,
    views=job_inputs.optional(snakemake.input, "views_manifest", "views", "views_labels"),
)
