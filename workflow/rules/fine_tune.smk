# With 'fine_tune: enabled: true': the chosen head + the backbone's top layers
# trained on augmented training images -> results/<id>/fine_tuned/model.keras,
# its history and curves, and its evaluation on images of the evaluation split.
# Its checkpoint (results/<id>/fine_tuned/.checkpoint/) is no output: Snakemake
# would delete it when a job fails, and it is what a rerun resumes from.


localrules:
    plot_fine_tuned_curves,
    plot_fine_tuned_evaluation,


rule fine_tune:
    input:
        head="results/{backbone}/head/head.h5",
        meta="results/{backbone}/head/head.json",
        # The kept images (bad ones left out per on_bad_image), with content hashes.
        train="results/{backbone}/features/train_manifest.csv",
        validation="results/{backbone}/features/validation_manifest.csv",
    # update(): the last good model is kept until a new one is written (deploy_model).
    output:
        model=update("results/{backbone}/fine_tuned/model.keras"),
        meta=update("results/{backbone}/fine_tuned/model.json"),
        history="results/{backbone}/fine_tuned/history.csv",
    log:
        "logs/{backbone}/fine_tune.log",
    benchmark:
        "logs/{backbone}/fine_tune.benchmark.tsv"
    group:
        "fine_tune"
    conda:
        keras_env("fine_tune")
    threads: config["fine_tune"]["threads"]
    resources:
        **gpu_request("fine_tune"),
        mem_mb=config["fine_tune"]["mem_mb"],
        runtime=config["fine_tune"]["runtime"],
    params:
        settings=result_settings("fine_tune", "enabled"),
        transforms=(
            augment.transforms(config["augmentation"])
            if config["fine_tune"]["augment"]
            else None
        ),
        data_dir=config["data_dir"],
    message:
        "{rule}: backbone {wildcards.backbone}"
    script:
        "../scripts/fine_tune.py"


rule evaluate_fine_tuned:
    input:
        model="results/{backbone}/fine_tuned/model.keras",
        meta="results/{backbone}/fine_tuned/model.json",
        manifest=f"results/{{backbone}}/features/{EVAL_SPLIT}_manifest.csv",
    output:
        predictions=report(
            "results/{backbone}/fine_tuned/evaluation/predictions.csv",
            caption="../report/predictions.rst",
            category="3. Evaluation",
            subcategory="{backbone} fine-tuned",
        ),
        metrics=report(
            "results/{backbone}/fine_tuned/evaluation/metrics.json",
            caption="../report/fine_tuned_metrics.rst",
            category="3. Evaluation",
            subcategory="{backbone} fine-tuned",
        ),
        confusion="results/{backbone}/fine_tuned/evaluation/confusion_matrix.csv",
        reliability="results/{backbone}/fine_tuned/evaluation/reliability.csv",
    log:
        "logs/{backbone}/evaluate_fine_tuned.log",
    benchmark:
        "logs/{backbone}/evaluate_fine_tuned.benchmark.tsv"
    group:
        "fine_tune"
    conda:
        keras_env("fine_tune")
    threads: config["fine_tune"]["threads"]
    resources:
        **gpu_request("fine_tune"),
        mem_mb=config["fine_tune"]["mem_mb"],
        # Minutes: start-up plus a slow CPU's 5 images/s, as for prediction.
        runtime=lambda wildcards: 10 + PLAN.split_size(EVAL_SPLIT) // 300,
    params:
        data_dir=config["data_dir"],
        split=EVAL_SPLIT,
        batch_size=config["extraction"]["batch_size"],
    message:
        "{rule}: backbone {wildcards.backbone}, split {params.split}"
    script:
        "../scripts/evaluate_fine_tuned.py"


rule plot_fine_tuned_curves:
    input:
        history="results/{backbone}/fine_tuned/history.csv",
        meta="results/{backbone}/fine_tuned/model.json",
    output:
        loss=report(
            "results/{backbone}/fine_tuned/plots/loss.png",
            caption="../report/fine_tuned_curves.rst",
            category="2. Training",
            subcategory="{backbone} fine-tuned",
        ),
        accuracy=report(
            "results/{backbone}/fine_tuned/plots/accuracy.png",
            caption="../report/fine_tuned_curves.rst",
            category="2. Training",
            subcategory="{backbone} fine-tuned",
        ),
    log:
        "logs/{backbone}/plot_fine_tuned_curves.log",
    benchmark:
        "logs/{backbone}/plot_fine_tuned_curves.benchmark.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    message:
        "{rule}: backbone {wildcards.backbone}"
    script:
        "../scripts/plot_curves.py"


rule plot_fine_tuned_evaluation:
    input:
        predictions="results/{backbone}/fine_tuned/evaluation/predictions.csv",
        confusion="results/{backbone}/fine_tuned/evaluation/confusion_matrix.csv",
        reliability="results/{backbone}/fine_tuned/evaluation/reliability.csv",
    output:
        confusion=report(
            "results/{backbone}/fine_tuned/evaluation/confusion_matrix.png",
            caption="../report/confusion_matrix.rst",
            category="3. Evaluation",
            subcategory="{backbone} fine-tuned",
        ),
        mistakes=report(
            "results/{backbone}/fine_tuned/evaluation/mistakes.png",
            caption="../report/mistakes.rst",
            category="3. Evaluation",
            subcategory="{backbone} fine-tuned",
        ),
        reliability=report(
            "results/{backbone}/fine_tuned/evaluation/reliability.png",
            caption="../report/reliability.rst",
            category="3. Evaluation",
            subcategory="{backbone} fine-tuned",
        ),
    log:
        "logs/{backbone}/plot_fine_tuned_evaluation.log",
    benchmark:
        "logs/{backbone}/plot_fine_tuned_evaluation.benchmark.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        data_dir=config["data_dir"],
        split=EVAL_SPLIT,
        name="{backbone} fine-tuned",
    message:
        "{rule}: backbone {wildcards.backbone}"
    script:
        "../scripts/plot_evaluation.py"
