from tlflow import logs, plots
from tlflow.metadata import Meta

logs.to_file(snakemake.log[0])
head = Meta.read(snakemake.input.meta).head
kind = head["selected"]["kind"]
for metric in ("loss", "accuracy"):
    plots.curve(
        snakemake.input.history,
        metric,
        snakemake.output[metric],
        title=f"{snakemake.wildcards.backbone} ({kind} head): {metric}",
        best_epoch=head["best_epoch"],
    )
