import time

from tlflow import features, logs

started = time.perf_counter()

logs.job(snakemake)
counts = features.extract_shard(
    manifest_path=snakemake.input.manifest,
    data_dir=snakemake.params.data_dir,
    spec=snakemake.params.spec,
    out_features=snakemake.output.features,
    out_manifest=snakemake.output.manifest,
    out_skipped=snakemake.output.skipped,
    cache_dir=snakemake.params.cache,
    batch_size=snakemake.params.batch_size,
    threads=snakemake.threads,
    on_bad_image=snakemake.params.on_bad_image,
    views=snakemake.params.get("views"),  # rule extract_views
)
# The job's CPU seconds (all threads) against its wall seconds: the cores it kept busy.
print(f"shard done: {counts}; {time.process_time():.1f} s CPU in {time.perf_counter() - started:.1f} s")
