# Trained head -> predictions on the evaluation split (config 'evaluation: split:';
# test if configured, else validation) -> metrics, confusion matrix, mistakes grid
# and reliability diagram.


localrules:
    plot_evaluation,
    plot_precision_recall,


rule evaluate:
    input:
        # The split's test-time views, when 'augmentation: test_time:' names any.
        unpack(view_files(EVAL_SPLIT, "manifest")),
        unpack(split_rows(EVAL_SPLIT)),
        labels=output_of(rules.join_split, "labels", split=EVAL_SPLIT),
        manifest=output_of(rules.join_split, "manifest", split=EVAL_SPLIT),
        head=rules.train_head.output.model,
        meta=rules.train_head.output.meta,
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
            input[f"{EVAL_SPLIT}_rows"] + input.views, input.head
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
        predictions=rules.evaluate.output.predictions,
        confusion=rules.evaluate.output.confusion,
        reliability=rules.evaluate.output.reliability,
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
        predictions=rules.evaluate.output.predictions,
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
