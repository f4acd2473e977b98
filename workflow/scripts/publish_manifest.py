from tlflow import logs, manifest

logs.job(snakemake)
manifest.publish_manifest(snakemake.input[0], snakemake.output[0])
print(f"{snakemake.output[0]}: {snakemake.params.images} images")
