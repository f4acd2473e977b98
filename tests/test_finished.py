"""What a finished run prints: where its pages are, and the report command."""

from tlflow.finished import where_to_look


def test_a_finished_run_names_its_pages_and_the_report_command(tmp_path):
    for page in (
        "results/vgg16/evaluation/summary.html",
        "results/b 2/evaluation/summary.html",
        "results/vgg16/audit/review.html",
    ):
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text("<html></html>")
    message = where_to_look(tmp_path)
    lines = message.splitlines()
    assert (
        "  results/b 2/evaluation/summary.html" in lines
        and "  results/vgg16/evaluation/summary.html" in lines
    )
    assert "  results/vgg16/audit/review.html" in lines
    assert "--report report.html" in message
    (tmp_path / "empty").mkdir()
    assert "results/" not in where_to_look(tmp_path / "empty")  # no page is named that is not there
