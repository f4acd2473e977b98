from tlflow import audit_plots, logs

logs.job(snakemake)
backbone, params = snakemake.wildcards.backbone, snakemake.params
suspects = audit_plots.plot_suspects(
    snakemake.input.suspects,
    params.data_dir,
    snakemake.output.suspects,
    title=f"{backbone}: suspected label errors",
    most=params.max_suspects,
)
pairs = audit_plots.plot_pairs(
    snakemake.input.duplicates,
    params.data_dir,
    snakemake.output.pairs,
    title=f"{backbone}: closest images across splits",
    most=params.max_pairs,
)
marked = audit_plots.plot_embedding(
    snakemake.input.embedding,
    snakemake.input.predictions,
    snakemake.output.embedding,
    title=f"{backbone}: features in 2-D; circled: misclassified on {params.split}",
)
print(f"shown: {suspects} suspects, {pairs} pairs, {marked} misclassified marked")
