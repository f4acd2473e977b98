# model.keras -> ONNX, LiteRT (TFLite) and SavedModel exports (config 'export:'),
# each run on the evaluation images against model.keras: export/check.json. The
# wildcard 'model' is a backbone's id, or '<id>/fine_tuned' for its fine-tuned model.


rule export_model:
    input:
        model="results/{model}/model.keras",
        meta="results/{model}/model.json",
        evaluation=lambda wildcards: model_manifest(wildcards, EVAL_SPLIT),
        # The int8 model's calibration images (if on).
        train=lambda wildcards: (
            model_manifest(wildcards, "train") if config["export"]["int8"] else []
        ),
    output:
        **export_outputs("results/{model}/export"),
    log:
        "logs/{model}/export_model.log",
    benchmark:
        "logs/{model}/export_model.benchmark.tsv"
    conda:
        "../../envs/keras.yaml"
    threads: config["export"]["threads"]
    resources:
        mem_mb=config["export"]["mem_mb"],
        runtime=lambda wildcards: 15
        + min(PLAN.split_size(EVAL_SPLIT), config["export"]["check_images"]) // 300,
    params:
        data_dir=config["data_dir"],
        formats=EXPORT_FORMATS,
        int8=config["export"]["int8"],
        calibration_images=config["export"]["calibration_images"],
        check_images=config["export"]["check_images"],
    message:
        "{rule}: {wildcards.model}"
    script:
        "../scripts/export_model.py"
