from tlflow import logs, plots

logs.job(snakemake)
backbone, split = snakemake.wildcards.backbone, snakemake.params.split
backbone = snakemake.params.get("name", backbone)  # e.g. "vgg16 fine-tuned"
plots.confusion(
    snakemake.input.confusion,
    snakemake.output.confusion,
    title=f"{backbone}: confusion matrix on {split}",
)
shown = plots.mistakes(
    snakemake.input.predictions,
    snakemake.params.data_dir,
    snakemake.output.mistakes,
    title=f"{backbone}: most confident mistakes on {split}",
    separator=snakemake.params.separator,
)
plots.reliability(
    snakemake.input.reliability,
    snakemake.output.reliability,
    title=f"{backbone}: reliability on {split}",
)
print(f"mistakes shown: {shown}")
