from tlflow import logs, plots
from tlflow.metadata import Meta

logs.job(snakemake)
head = Meta.read(snakemake.input.meta).head
kind = head["selected"]["kind"]
# A fine-tuned model's metadata holds its own epochs under "fine_tune".
fitted, what = (head["fine_tune"], " head, fine-tuned") if "fine_tune" in head else (head, " head")
for metric in ("loss", "accuracy"):
    plots.curve(
        snakemake.input.history,
        metric,
        snakemake.output[metric],
        title=f"{snakemake.wildcards.backbone} ({kind}{what}): {metric}",
        best_epoch=fitted["best_epoch"],
    )
