from pathlib import Path

from tlflow import comparison, job_inputs, logs, plots

logs.job(snakemake)
inputs = snakemake.input
# Fine-tuned models' metadata and metrics, when fine-tuning is on.
fine_tuned_files = job_inputs.optional(inputs, "fine_tuned_meta", "fine_tuned_metrics")
tuned = list(zip(*fine_tuned_files)) if fine_tuned_files else [None] * len(inputs.meta)
rows = [
    comparison.row(
        backbone,
        head_meta,
        metrics_json,
        # Measured times of the jobs that made the current features and head, where logged.
        sorted(Path(logs, "extract_shard").rglob("*.benchmark.tsv")),
        [Path(logs, "train_head.benchmark.tsv")],
        fine_tuned=(*fine_tuned, [Path(logs, "fine_tune.benchmark.tsv")]) if fine_tuned else None,
    )
    for backbone, head_meta, metrics_json, logs, fine_tuned in zip(
        snakemake.params.backbones,
        inputs.meta,
        inputs.metrics,
        snakemake.params.logs,
        tuned,
    )
]
table = comparison.compare_backbones(rows, snakemake.params.criterion, snakemake.output.table)
plots.comparison(snakemake.output.table, snakemake.output.figure, title="Backbones compared")
print(table.to_string())
