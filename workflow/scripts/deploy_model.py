from tlflow import deploy, logs

logs.job(snakemake)
deploy.deploy_model(
    head_model=snakemake.input.head,
    head_meta=snakemake.input.meta,
    out_model=snakemake.output.model,
    out_meta=snakemake.output.meta,
    test_time=snakemake.params.get("test_time", []),
)
