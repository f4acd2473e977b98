from tlflow import head, logs

logs.job(snakemake)
head.train_and_save(
    features={
        split: tuple(snakemake.input[f"{split}{part}"] for part in ("", "_rows", "_labels"))
        for split in ("train", "validation")
    },
    settings=snakemake.params.settings,
    meta=snakemake.params.meta,
    threads=snakemake.threads,
    outputs=snakemake.output,
    views=(
        (snakemake.input.views_manifest, snakemake.input.views, snakemake.input.views_labels)
        if "views" in snakemake.input.keys()
        else None
    ),
)
