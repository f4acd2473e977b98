# Every step's results of a backbone -> its run summary; with several backbones, a
# table ranking them. Included last: the rules read the outputs of all the others.


localrules:
    summarise_run,
    compare_backbones,


rule summarise_run:
    input:
        meta=rules.train_head.output.meta,
        metrics=rules.evaluate.output.metrics,
        manifests=expand(
            rules.join_split.output.manifest, split=SPLITS, allow_missing=True
        ),
        skipped=expand(
            rules.join_split.output.skipped, split=SPLITS, allow_missing=True
        ),
        # The audit's counts, for its warning of copies across splits (if on).
        audit=rules.audit.output.summary if AUDIT else [],
        # The fine-tuned model's metadata and scores, shown beside (if on).
        fine_tuned_meta=rules.fine_tune.output.meta if FINE_TUNE else [],
        fine_tuned_metrics=rules.evaluate_fine_tuned.output.metrics if FINE_TUNE else [],
    output:
        report(
            "results/{backbone}/evaluation/summary.html",
            caption="../report/summary.rst",
            category="1. Run",
            subcategory="{backbone}",
        ),
    log:
        "logs/{backbone}/summarise_run.log",
    benchmark:
        "logs/{backbone}/summarise_run.benchmark.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, input: job_memory.tables(
            [*input.manifests, *input.skipped]
        ),
        runtime=5,
    params:
        splits=SPLITS,
        split=EVAL_SPLIT,
        # What config 'corrections' changed.
        corrections=PLAN.corrected,
    message:
        "{rule}: backbone {wildcards.backbone}"
    script:
        "../scripts/summarise_run.py"


# With several backbones in the config: one table and one figure ranking them.
rule compare_backbones:
    input:
        meta=expand(rules.train_head.output.meta, backbone=SPECS),
        metrics=expand(rules.evaluate.output.metrics, backbone=SPECS),
        # Fine-tuned models beside the frozen ones (if on).
        fine_tuned_meta=expand(
            rules.fine_tune.output.meta, backbone=SPECS if FINE_TUNE else []
        ),
        fine_tuned_metrics=expand(
            rules.evaluate_fine_tuned.output.metrics,
            backbone=SPECS if FINE_TUNE else [],
        ),
    output:
        table=report(
            "results/comparison.csv",
            caption="../report/comparison.rst",
            category="5. Comparison",
        ),
        figure=report(
            "results/comparison.png",
            caption="../report/comparison.rst",
            category="5. Comparison",
        ),
    log:
        "logs/compare_backbones.log",
    benchmark:
        "logs/compare_backbones.benchmark.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        backbones=list(SPECS),
        criterion=config["head"]["criterion"],
        logs=[f"logs/{backbone}" for backbone in SPECS],
    message:
        f"{{rule}}: {len(SPECS)} backbones"
    script:
        "../scripts/compare_backbones.py"
