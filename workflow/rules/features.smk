# Image folders -> bottleneck features, one job per shard, joined per split.


# Joining only copies rows (seconds, memory-mapped): done on the submit host
# rather than as a cluster job of its own.
localrules:
    join_split,


rule extract_shard:
    input:
        manifest=f"{MANIFESTS}/{{split}}/shard-{{k}}.csv",
        images=shard_images,
    output:
        features="results/{backbone}/features/shards/{split}/shard-{k}.npy",
        manifest="results/{backbone}/features/shards/{split}/shard-{k}.csv",
        skipped="results/{backbone}/features/shards/{split}/shard-{k}.skipped.csv",
    log:
        "logs/{backbone}/extract_shard/{split}/shard-{k}.log",
    benchmark:
        "logs/{backbone}/extract_shard/{split}/shard-{k}.benchmark.tsv"
    conda:
        "../../envs/keras.yaml"
    threads: config["extraction"]["threads"]
    resources:
        **gpu_request("extraction"),
        mem_mb=config["extraction"]["mem_mb"],
        # Minutes: start-up plus a slow CPU's 5 images/s, so big shards ask for more.
        runtime=lambda wildcards: 10 + shard_image_count(wildcards) // 300,
    params:
        spec=backbone_spec,
        data_dir=config["data_dir"],
        cache="results/{backbone}/.cache/{split}",
        batch_size=config["extraction"]["batch_size"],
        on_bad_image=config["on_bad_image"],
    script:
        "../scripts/extract_shard.py"


rule join_split:
    input:
        shard_outputs,
    output:
        features="results/{backbone}/features/{split}.npy",
        labels="results/{backbone}/features/{split}_labels.npy",
        manifest="results/{backbone}/features/{split}_manifest.csv",
        skipped="results/{backbone}/features/{split}_skipped.csv",
    log:
        "logs/{backbone}/join_split/{split}.log",
    benchmark:
        "logs/{backbone}/join_split/{split}.benchmark.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wildcards, input: 5 + input.size_mb // 500,
    script:
        "../scripts/join_split.py"
