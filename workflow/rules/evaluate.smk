# Trained head -> predictions on the evaluation split (config 'evaluation: split:';
# test if configured, else validation) -> metrics, confusion matrix, mistakes grid,
# reliability diagram and a run summary; with several backbones, a table ranking them.


localrules:
    plot_evaluation,
    plot_precision_recall,
    summarise_run,
    compare_backbones,


rule evaluate:
    input:
        # The split's test-time views, when 'augmentation: test_time:' names any.
        unpack(view_files(EVAL_SPLIT, "views", "views_manifest")),
        unpack(split_rows(EVAL_SPLIT)),
        labels=f"results/{{backbone}}/features/{EVAL_SPLIT}_labels.npy",
        manifest=f"results/{{backbone}}/features/{EVAL_SPLIT}_manifest.csv",
        head="results/{backbone}/head/head.h5",
        meta="results/{backbone}/head/head.json",
    output:
        predictions=report(
            "results/{backbone}/evaluation/predictions.csv",
            caption="../report/predictions.rst",
            category="3. Evaluation",
            subcategory="{backbone}",
        ),
        metrics=report(
            "results/{backbone}/evaluation/metrics.json",
            caption="../report/metrics.rst",
            category="3. Evaluation",
            subcategory="{backbone}",
        ),
        confusion="results/{backbone}/evaluation/confusion_matrix.csv",
        reliability="results/{backbone}/evaluation/reliability.csv",
    log:
        "logs/{backbone}/evaluate.log",
    benchmark:
        "logs/{backbone}/evaluate.benchmark.tsv"
    group:
        "model"
    conda:
        "../../envs/keras.yaml"
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=lambda wildcards, input: job_memory.evaluate(
            input[f"{EVAL_SPLIT}_rows"] + input.get("views", []), input.head
        ),
        runtime=lambda wildcards, input: 10 + input.size_mb // 100,
    params:
        split=EVAL_SPLIT,
    message:
        "{rule}: backbone {wildcards.backbone}, split {params.split}"
    script:
        "../scripts/evaluate.py"


rule plot_evaluation:
    input:
        predictions="results/{backbone}/evaluation/predictions.csv",
        confusion="results/{backbone}/evaluation/confusion_matrix.csv",
        reliability="results/{backbone}/evaluation/reliability.csv",
    output:
        confusion=report(
            "results/{backbone}/evaluation/confusion_matrix.png",
            caption="../report/confusion_matrix.rst",
            category="3. Evaluation",
            subcategory="{backbone}",
        ),
        mistakes=report(
            "results/{backbone}/evaluation/mistakes.png",
            caption="../report/mistakes.rst",
            category="3. Evaluation",
            subcategory="{backbone}",
        ),
        reliability=report(
            "results/{backbone}/evaluation/reliability.png",
            caption="../report/reliability.rst",
            category="3. Evaluation",
            subcategory="{backbone}",
        ),
    log:
        "logs/{backbone}/plot_evaluation.log",
    benchmark:
        "logs/{backbone}/plot_evaluation.benchmark.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        data_dir=config["data_dir"],
        split=EVAL_SPLIT,
        # Joins an image's labels in multi-label predictions.
        separator=config["label_separator"],
    message:
        "{rule}: backbone {wildcards.backbone}"
    script:
        "../scripts/plot_evaluation.py"


# Multi-label data: each label's precision-recall curve and its threshold.
rule plot_precision_recall:
    input:
        predictions="results/{backbone}/evaluation/predictions.csv",
    output:
        report(
            "results/{backbone}/evaluation/precision_recall.png",
            caption="../report/precision_recall.rst",
            category="3. Evaluation",
            subcategory="{backbone}",
        ),
    log:
        "logs/{backbone}/plot_precision_recall.log",
    benchmark:
        "logs/{backbone}/plot_precision_recall.benchmark.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        split=EVAL_SPLIT,
        separator=config["label_separator"],
    message:
        "{rule}: backbone {wildcards.backbone}"
    script:
        "../scripts/plot_precision_recall.py"


rule summarise_run:
    input:
        meta="results/{backbone}/head/head.json",
        metrics="results/{backbone}/evaluation/metrics.json",
        manifests=expand(
            "results/{{backbone}}/features/{split}_manifest.csv", split=SPLITS
        ),
        skipped=expand(
            "results/{{backbone}}/features/{split}_skipped.csv", split=SPLITS
        ),
        # The audit's counts, for its warning of copies across splits (if on).
        audit=(["results/{backbone}/audit/audit.json"] if AUDIT else []),
        # The fine-tuned model's metadata and scores, shown beside (if on).
        fine_tuned=(
            [
                "results/{backbone}/fine_tuned/model.json",
                "results/{backbone}/fine_tuned/evaluation/metrics.json",
            ]
            if FINE_TUNE
            else []
        ),
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
        meta=expand("results/{backbone}/head/head.json", backbone=SPECS),
        metrics=expand("results/{backbone}/evaluation/metrics.json", backbone=SPECS),
        # Fine-tuned models beside the frozen ones (if on).
        fine_tuned_meta=expand(
            "results/{backbone}/fine_tuned/model.json",
            backbone=SPECS if FINE_TUNE else [],
        ),
        fine_tuned_metrics=expand(
            "results/{backbone}/fine_tuned/evaluation/metrics.json",
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
