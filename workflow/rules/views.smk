# Image shards -> features of views of the images (augmented views of the training
# split, test-time views of the evaluation split), cached apart from the originals
# -> joined per split. Only with 'augmentation: views:' or 'test_time:' set. The
# rules are the originals' (features.smk), with a view set and files of their own.


localrules:
    join_views,


# Reads the shard's manifest like extract_shard; the originals' jobs do not depend
# on it, so changing the views never recomputes an original.
use rule extract_shard as extract_views with:
    output:
        features="results/{backbone}/features/shards/{split}/views/shard-{k}.npy",
        manifest="results/{backbone}/features/shards/{split}/views/shard-{k}.csv",
        skipped="results/{backbone}/features/shards/{split}/views/shard-{k}.skipped.csv",
    log:
        "logs/{backbone}/extract_views/{split}/shard-{k}.log",
    benchmark:
        "logs/{backbone}/extract_views/{split}/shard-{k}.benchmark.tsv"
    # Resources and inputs are replaced whole by `with:`, params added to.
    resources:
        **gpu_request("extraction"),
        mem_mb=config["extraction"]["mem_mb"],
        # As extract_shard's, for every view of every image.
        runtime=lambda wildcards: 10
        + images_of("{split}/shard-{k}")(wildcards)
        * len(view_set(wildcards)["names"])
        // 300,
    params:
        views=view_set,


use rule join_split as join_views with:
    input:
        features=shard_outputs("features", views=True),
        manifests=shard_outputs("manifest", views=True),
        skipped=shard_outputs("skipped", views=True),
        labels=output_of(rules.publish_manifest, listing="{split}/labels"),
    output:
        labels="results/{backbone}/features/views/{split}_labels.npy",
        manifest="results/{backbone}/features/views/{split}_manifest.csv",
        skipped="results/{backbone}/features/views/{split}_skipped.csv",
    log:
        "logs/{backbone}/join_views/{split}.log",
    benchmark:
        "logs/{backbone}/join_views/{split}.benchmark.tsv"
    params:
        views=view_set,
    message:
        "{rule}: backbone {wildcards.backbone}, split {wildcards.split}, "
        "views of {params.images} images"
