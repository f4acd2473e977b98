from pathlib import Path

from tlflow import comparison, logs, plots

logs.to_file(snakemake.log[0])
rows = [
    comparison.row(
        backbone,
        head_meta,
        metrics_json,
        # Measured times of the jobs that made the current features and head, where logged.
        sorted(Path(logs, "extract_shard").rglob("*.benchmark.tsv")),
        [Path(logs, "train_head.benchmark.tsv")],
    )
    for backbone, head_meta, metrics_json, logs in zip(
        snakemake.params.backbones,
        snakemake.input.meta,
        snakemake.input.metrics,
        snakemake.params.logs,
    )
]
table = comparison.compare(rows, snakemake.params.criterion, snakemake.output.table)
plots.comparison(snakemake.output.table, snakemake.output.figure, title="Backbones compared")
print(table.to_string())
