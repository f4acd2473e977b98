# Training history -> loss and accuracy curves.


localrules:
    plot_curves,


rule plot_curves:
    input:
        history=rules.train_head.output.history,
        meta=rules.train_head.output.meta,
    output:
        loss=report(
            "results/{backbone}/plots/loss.png",
            caption="../report/loss.rst",
            category="2. Training",
            subcategory="{backbone}",
        ),
        accuracy=report(
            "results/{backbone}/plots/accuracy.png",
            caption="../report/accuracy.rst",
            category="2. Training",
            subcategory="{backbone}",
        ),
    log:
        "logs/{backbone}/plot_curves.log",
    benchmark:
        "logs/{backbone}/plot_curves.benchmark.tsv"
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
