from tlflow import evaluate, logs

logs.job(snakemake)
evaluate.evaluate_fine_tuned(
    model_path=snakemake.input.model,
    manifest_csv=snakemake.input.manifest,
    data_dir=snakemake.params.data_dir,
    split=snakemake.params.split,
    out_predictions=snakemake.output.predictions,
    out_metrics=snakemake.output.metrics,
    out_confusion=snakemake.output.confusion,
    out_reliability=snakemake.output.reliability,
    batch_size=snakemake.params.batch_size,
    threads=snakemake.threads,
)
