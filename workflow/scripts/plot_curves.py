import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from tlflow import logs, plots  # noqa: E402
from tlflow.metadata import Meta  # noqa: E402

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
