from tlflow import logs, manifest, predict

logs.job(snakemake)
counts = predict.predict(
    model_path=snakemake.input.model,
    folder=snakemake.params.folder,
    out_csv=snakemake.output[0],
    batch_size=snakemake.params.batch_size,
    threads=snakemake.threads,
    files=[row["file"] for row in manifest.read_listing(snakemake.input.listing)],
)
print(f"predictions written: {counts}")
