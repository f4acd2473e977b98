# Head + backbone -> one deployable model.keras -> predictions for a folder of new
# images (config 'predict: images:').


rule deploy_model:
    input:
        head=rules.train_head.output.model,
        meta=rules.train_head.output.meta,
    # update(): Snakemake keeps the last good model until a new one is written, and
    # puts it back if this job fails.
    output:
        model=update("results/{backbone}/model.keras"),
        meta=update("results/{backbone}/model.json"),
    log:
        "logs/{backbone}/deploy_model.log",
    benchmark:
        "logs/{backbone}/deploy_model.benchmark.tsv"
    group:
        "model"
    conda:
        "../../envs/keras.yaml"
    threads: 1
    resources:
        # Builds the backbone once; a very large one may need more (profile: set-resources).
        mem_mb=4000,
        runtime=10,
    params:
        # The test-time views to average over (none: the parameter is left out).
        **test_time_params(),
    message:
        "{rule}: backbone {wildcards.backbone}"
    script:
        "../scripts/deploy_model.py"


rule predict:
    input:
        model=predict_model(".keras"),
        meta=predict_model(".json"),
        # The images' listing with content hashes, not the images (see publish_manifest).
        listing=predict_listing,
    output:
        "results/{backbone}/predictions/predictions.csv",
    log:
        "logs/{backbone}/predict.log",
    benchmark:
        "logs/{backbone}/predict.benchmark.tsv"
    conda:
        keras_env("predict")
    threads: config["predict"]["threads"]
    resources:
        **gpu_request("predict"),
        mem_mb=config["predict"]["mem_mb"],
        # Minutes: start-up plus a slow CPU's 5 images/s, as for extraction.
        runtime=lambda wildcards: 10 + images_of("predict")(wildcards) // 300,
    params:
        folder=PREDICT_DIR,
        batch_size=config["extraction"]["batch_size"],
        images=images_of("predict"),
    message:
        "{rule}: backbone {wildcards.backbone}, {params.images} images"
    script:
        "../scripts/predict.py"
