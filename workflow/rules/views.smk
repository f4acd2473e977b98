# Image shards -> features of views of the images (augmented views of the training
# split, test-time views of the evaluation split), cached apart from the originals
# -> joined per split. Only with 'augmentation: views:' or 'test_time:' set.


localrules:
    join_views,


# Reads the shard's manifest like extract_shard; the originals' jobs do not depend
# on it, so changing the views never recomputes an original.
rule extract_views:
    input:
        manifest=f"{MANIFESTS}/{{split}}/shard-{{k}}.csv",
    output:
        features="results/{backbone}/features/shards/{split}/views/shard-{k}.npy",
        manifest="results/{backbone}/features/shards/{split}/views/shard-{k}.csv",
        skipped="results/{backbone}/features/shards/{split}/views/shard-{k}.skipped.csv",
    log:
        "logs/{backbone}/extract_views/{split}/shard-{k}.log",
    benchmark:
        "logs/{backbone}/extract_views/{split}/shard-{k}.benchmark.tsv"
    conda:
        keras_env("extraction")
    threads: config["extraction"]["threads"]
    resources:
        **gpu_request("extraction"),
        mem_mb=config["extraction"]["mem_mb"],
        # As extract_shard's, for every view of every image.
        runtime=lambda wildcards: 10
        + shard_images(wildcards) * len(view_set(wildcards)["names"]) // 300,
    params:
        spec=backbone_spec,
        views=view_set,
        data_dir=config["data_dir"],
        cache="results/{backbone}/.cache/{split}",
        batch_size=config["extraction"]["batch_size"],
        on_bad_image=config["on_bad_image"],
        images=shard_images,
    message:
        "{rule}: backbone {wildcards.backbone}, split {wildcards.split}, "
        "shard {wildcards.k}, {params.images} images"
    script:
        "../scripts/extract_shard.py"


rule join_views:
    input:
        features=shard_outputs(".npy", views=True),
        manifests=shard_outputs(".csv", views=True),
        skipped=shard_outputs(".skipped.csv", views=True),
        labels=f"{MANIFESTS}/{{split}}/labels.csv",
    output:
        labels="results/{backbone}/features/views/{split}_labels.npy",
        manifest="results/{backbone}/features/views/{split}_manifest.csv",
        skipped="results/{backbone}/features/views/{split}_skipped.csv",
    log:
        "logs/{backbone}/join_views/{split}.log",
    benchmark:
        "logs/{backbone}/join_views/{split}.benchmark.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wildcards, input: 5 + input.size_mb // 500,
    # The split's feature cache, pruned once all its shards are done.
    params:
        spec=backbone_spec,
        views=view_set,
        cache="results/{backbone}/.cache/{split}",
        images=split_images,
        multi_label=LABEL_SETS,
    message:
        "{rule}: backbone {wildcards.backbone}, split {wildcards.split}, "
        "views of {params.images} images"
    script:
        "../scripts/join_split.py"
