from tlflow import fine_tune, logs

logs.job(snakemake)
scores = fine_tune.fine_tune(
    head_model=snakemake.input.head,
    head_meta=snakemake.input.meta,
    manifests={split: snakemake.input[split] for split in ("train", "validation")},
    data_dir=snakemake.params.data_dir,
    settings=snakemake.params.settings,
    transforms=snakemake.params.transforms,
    threads=snakemake.threads,
    outputs=snakemake.output,
)
print(f"fine-tuned, validation: {scores}")
