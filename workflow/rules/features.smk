# Image folders -> manifests -> bottleneck features, one job per shard, joined
# per split.


# Publishing a manifest and joining shards take seconds: done on the submit host
# rather than as cluster jobs of their own.
localrules:
    publish_manifest,
    join_split,


# A listing's manifest: its images and their content hashes, computed when the
# workflow was read and staged under a name made of their digest. A new digest is
# a new input, so the rule reruns exactly when that content changed (an image
# added, removed or edited), never for a touched file.
rule publish_manifest:
    input:
        staged_listing,
    output:
        f"{MANIFESTS}/{{listing}}.csv",
    log:
        "logs/publish_manifest/{listing}.log",
    benchmark:
        "logs/publish_manifest/{listing}.benchmark.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        images=images_of("{listing}"),
    message:
        "{rule}: {wildcards.listing}, {params.images} images"
    script:
        "../scripts/publish_manifest.py"


# The manifest (file, content hash: no class) is the job's only input: it reads
# the images the manifest lists, so Snakemake tracks one file per shard, not one
# per image.
rule extract_shard:
    input:
        manifest=output_of(rules.publish_manifest, listing="{split}/shard-{k}"),
    output:
        features="results/{backbone}/features/shards/{split}/shard-{k}.npy",
        manifest="results/{backbone}/features/shards/{split}/shard-{k}.csv",
        skipped="results/{backbone}/features/shards/{split}/shard-{k}.skipped.csv",
    log:
        "logs/{backbone}/extract_shard/{split}/shard-{k}.log",
    benchmark:
        "logs/{backbone}/extract_shard/{split}/shard-{k}.benchmark.tsv"
    conda:
        keras_env("extraction")
    threads: config["extraction"]["threads"]
    resources:
        **gpu_request("extraction"),
        mem_mb=config["extraction"]["mem_mb"],
        # Minutes: start-up plus a slow CPU's 5 images/s, so big shards ask for more.
        runtime=lambda wildcards: 10 + images_of("{split}/shard-{k}")(wildcards) // 300,
    params:
        spec=backbone_spec,
        data_dir=config["data_dir"],
        cache="results/{backbone}/.cache/{split}",
        batch_size=config["extraction"]["batch_size"],
        on_bad_image=config["on_bad_image"],
        images=images_of("{split}/shard-{k}"),
    message:
        "{rule}: backbone {wildcards.backbone}, split {wildcards.split}, "
        "shard {wildcards.k}, {params.images} images"
    script:
        "../scripts/extract_shard.py"


# The split's classes join its rows here, from its labels listing: a new label
# reruns this job and what follows, never an extraction.
rule join_split:
    input:
        features=shard_outputs("features"),
        manifests=shard_outputs("manifest"),
        skipped=shard_outputs("skipped"),
        labels=output_of(rules.publish_manifest, listing="{split}/labels"),
    # No copy of the rows: the manifest says which shard file holds each one.
    output:
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
        mem_mb=lambda wildcards, input: job_memory.tables(
            [*input.manifests, *input.skipped, input.labels], job_memory.JOIN_BYTES
        ),
        runtime=lambda wildcards, input: 5 + input.size_mb // 500,
    # The split's feature cache, pruned once all its shards are done.
    params:
        spec=backbone_spec,
        cache="results/{backbone}/.cache/{split}",
        images=split_images,
        multi_label=LABEL_SETS,
    message:
        "{rule}: backbone {wildcards.backbone}, split {wildcards.split}, "
        "{params.images} images"
    script:
        "../scripts/join_split.py"
