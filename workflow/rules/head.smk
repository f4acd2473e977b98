# Cached features -> candidate heads scored on validation -> the chosen head, its
# training history, the table of candidates and the metadata.


rule train_head:
    input:
        # The training images' augmented views, when 'augmentation: views:' is set.
        unpack(view_files("train", "labels", "manifest")),
        # Each split's rows stay in its shard files; its manifest says where.
        unpack(split_rows("train", "validation")),
        train=output_of(rules.join_split, "manifest", split="train"),
        train_labels=output_of(rules.join_split, "labels", split="train"),
        validation=output_of(rules.join_split, "manifest", split="validation"),
        validation_labels=output_of(rules.join_split, "labels", split="validation"),
    output:
        model="results/{backbone}/head/head.h5",
        history="results/{backbone}/head/history.csv",
        candidates=report(
            "results/{backbone}/head/candidates.csv",
            caption="../report/candidates.rst",
            category="2. Training",
            subcategory="{backbone}",
        ),
        meta="results/{backbone}/head/head.json",
    log:
        "logs/{backbone}/train_head.log",
    benchmark:
        "logs/{backbone}/train_head.benchmark.tsv"
    group:
        "model"
    conda:
        keras_env("head")
    threads: config["head"]["threads"]
    resources:
        **gpu_request("head"),
        # What it holds of the rows it reads (tlflow.job_memory).
        mem_mb=lambda wildcards, input: job_memory.train_head(
            input.train_rows + input.views,
            input.validation_rows,
            selection.values(config["head"], "pooling"),
            SPECS[wildcards.backbone]["features"],
            len(CLASSES),
        ),
        runtime=lambda wildcards, input: 10 + input.size_mb // 100,
    params:
        settings=result_settings("head"),
        meta=head_meta,
    message:
        "{rule}: backbone {wildcards.backbone}"
    script:
        "../scripts/train_head.py"
