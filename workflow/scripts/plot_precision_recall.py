from tlflow import logs, plots

logs.job(snakemake)
plots.precision_recall(
    snakemake.input.predictions,
    snakemake.output[0],
    title=f"{snakemake.wildcards.backbone}: precision and recall per label on {snakemake.params.split}",
    separator=snakemake.params.separator,
)
