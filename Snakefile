# The workflow is workflow/Snakefile, where the Snakemake workflow catalog and
# `snakedeploy` expect it. A clone runs it from its root as a deployment does, as
# a module: the same code path, and the module's default target (rule all).


configfile: "config/config.yaml"


module tlflow:
    snakefile:
        "workflow/Snakefile"
    config:
        config


use rule * from tlflow


onsuccess:
    from snakemake.logging import logger
    from tlflow.finished import where_to_look

    logger.info(where_to_look())
