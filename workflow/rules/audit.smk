# Cached features of every split -> suspected label errors, duplicates and leaks
# across splits, a 2-D map of the images -> their figures. No extraction: seconds.


localrules:
    plot_audit,
    review_page,


rule audit:
    input:
        unpack(split_rows(*SPLITS)),
        labels=expand(rules.join_split.output.labels, split=SPLITS, allow_missing=True),
        manifests=expand(
            rules.join_split.output.manifest, split=SPLITS, allow_missing=True
        ),
    output:
        suspects=report(
            "results/{backbone}/audit/label_suspects.csv",
            caption="../report/label_suspects.rst",
            category="4. Data audit",
            subcategory="{backbone}",
        ),
        duplicates=report(
            "results/{backbone}/audit/duplicates.csv",
            caption="../report/duplicates.rst",
            category="4. Data audit",
            subcategory="{backbone}",
        ),
        embedding="results/{backbone}/audit/embedding.csv",
        summary=report(
            "results/{backbone}/audit/audit.json",
            caption="../report/audit_summary.rst",
            category="4. Data audit",
            subcategory="{backbone}",
        ),
    log:
        "logs/{backbone}/audit.log",
    benchmark:
        "logs/{backbone}/audit.benchmark.tsv"
    # scikit-learn (the probe, PCA, t-SNE) and faiss (the near-duplicate index) are
    # pinned there; TensorFlow is not imported.
    conda:
        "../../envs/keras.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, input: job_memory.audit(
            [path for split in SPLITS for path in input[f"{split}_rows"]],
            config["audit"]["probe_rows"],
        ),
        runtime=lambda wildcards, input: 10 + input.size_mb // 500,
    params:
        splits=SPLITS,
        classes=CLASSES,
        folds=config["audit"]["folds"],
        probe_rows=config["audit"]["probe_rows"],
        similarity=config["audit"]["near_duplicate_similarity"],
        neighbours=config["audit"]["near_duplicates_per_image"],
        search=config["audit"]["near_duplicate_search"],
        projection=config["audit"]["projection"],
        # What the features store (pooled vectors or maps), and so how to pool them.
        spec=backbone_spec,
    message:
        "{rule}: backbone {wildcards.backbone}"
    script:
        "../scripts/audit.py"


rule plot_audit:
    input:
        suspects=rules.audit.output.suspects,
        duplicates=rules.audit.output.duplicates,
        embedding=rules.audit.output.embedding,
        predictions=rules.evaluate.output.predictions,
    output:
        suspects=report(
            "results/{backbone}/audit/label_suspects.png",
            caption="../report/label_suspects_grid.rst",
            category="4. Data audit",
            subcategory="{backbone}",
        ),
        pairs=report(
            "results/{backbone}/audit/cross_split_pairs.png",
            caption="../report/cross_split_pairs.rst",
            category="4. Data audit",
            subcategory="{backbone}",
        ),
        embedding=report(
            "results/{backbone}/audit/embedding.png",
            caption="../report/embedding.rst",
            category="4. Data audit",
            subcategory="{backbone}",
        ),
    log:
        "logs/{backbone}/plot_audit.log",
    benchmark:
        "logs/{backbone}/plot_audit.benchmark.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, input: job_memory.tables(input),
        runtime=5,
    params:
        data_dir=config["data_dir"],
        split=EVAL_SPLIT,
        max_suspects=config["audit"]["max_suspects"],
        max_pairs=config["audit"]["max_pairs"],
    message:
        "{rule}: backbone {wildcards.backbone}"
    script:
        "../scripts/plot_audit.py"


# The page to review the suspects and duplicate pairs: it downloads the corrections
# table config 'corrections' reads, with the earlier corrections in it.
rule review_page:
    input:
        suspects=rules.audit.output.suspects,
        duplicates=rules.audit.output.duplicates,
        embedding=rules.audit.output.embedding,
        corrections=config["corrections"] or [],
    output:
        report(
            "results/{backbone}/audit/review.html",
            caption="../report/review.rst",
            category="4. Data audit",
            subcategory="{backbone}",
        ),
    log:
        "logs/{backbone}/review_page.log",
    benchmark:
        "logs/{backbone}/review_page.benchmark.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, input: job_memory.tables(input),
        runtime=5,
    params:
        data_dir=config["data_dir"],
        classes=CLASSES,
    message:
        "{rule}: backbone {wildcards.backbone}"
    script:
        "../scripts/review_page.py"
