# Transfer learning on image folders: frozen backbone -> cached bottleneck
# features -> small dense head -> history and plots. README.md explains the use.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/views.smk"
include: "workflow/rules/head.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/fine_tune.smk"


rule all:
    default_target: True
    input:
        final_targets(),
