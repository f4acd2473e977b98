# Training history -> loss and accuracy curves.


localrules:
    plot_curves,


rule plot_curves:
    input:
        "results/{backbone}/head/history.csv",
    output:
        loss="results/{backbone}/plots/loss.png",
        accuracy="results/{backbone}/plots/accuracy.png",
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
    script:
        "../scripts/plot_curves.py"
