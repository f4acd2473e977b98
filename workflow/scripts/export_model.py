from pathlib import Path

from tlflow import export, export_check, logs
from tlflow.job_inputs import optional
from tlflow.metadata import Meta
from tlflow.readers import load_model
from tlflow.runtime import configure_threads

logs.job(snakemake)
configure_threads(snakemake.threads)  # before TensorFlow starts: its pools are fixed then
size = Meta.read(snakemake.input.meta).backbone.image_size
data_dir, formats, int8 = snakemake.params.data_dir, snakemake.params.formats, snakemake.params.int8
calibration = None
train = optional(snakemake.input, "train")  # with int8 only
if train is not None:  # training images only: the evaluation split stays unseen
    calibration, _ = export_check.manifest_images(train, data_dir, size, snakemake.params.calibration_images)
out_dir = Path(snakemake.output.meta).parent
# Loaded once for the exports and the check.
model = load_model(snakemake.input.model)
seconds = export.export_model(snakemake.input.model, out_dir, formats, calibration, loaded=model)
print(f"export seconds: {seconds}")
images, labels = export_check.manifest_images(
    snakemake.input.evaluation, data_dir, size, snakemake.params.check_images
)
export_check.check(
    snakemake.input.model,
    out_dir,
    formats,
    images,
    labels,
    snakemake.output.check,
    threads=snakemake.threads,
    int8=int8,
    seconds=seconds,
    loaded=model,
)
