import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from tlflow import logs, predict  # noqa: E402

logs.to_file(snakemake.log[0])
counts = predict.predict_folder(
    model_path=snakemake.input.model,
    folder=snakemake.params.folder,
    out_csv=snakemake.output[0],
    batch_size=snakemake.params.batch_size,
    threads=snakemake.threads,
)
print(f"predictions written: {counts}")
