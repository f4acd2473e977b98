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
        head=rules.train_head.output.model,
        meta=rules.train_head.output.meta,
        # The kept images (bad ones left out per on_bad_image), with content hashes.
        train=output_of(rules.join_split, "manifest", split="train"),
        validation=output_of(rules.join_split, "manifest", split="validation"),
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
        model=rules.fine_tune.output.model,
        meta=rules.fine_tune.output.meta,
        manifest=output_of(rules.join_split, "manifest", split=EVAL_SPLIT),
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


# The frozen head's plot rules (plots.smk, evaluate.smk) on the fine-tuned model's files.
use rule plot_curves as plot_fine_tuned_curves with:
    input:
        history=rules.fine_tune.output.history,
        meta=rules.fine_tune.output.meta,
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


use rule plot_evaluation as plot_fine_tuned_evaluation with:
    input:
        predictions=rules.evaluate_fine_tuned.output.predictions,
        confusion=rules.evaluate_fine_tuned.output.confusion,
        reliability=rules.evaluate_fine_tuned.output.reliability,
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
    # Params are added to plot_evaluation's.
    params:
        name="{backbone} fine-tuned",
