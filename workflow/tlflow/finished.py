"""What a finished run tells its user: where to look."""

from __future__ import annotations

from pathlib import Path


def where_to_look(workdir=".") -> str:
    """The summary pages and review pages the run left (paths from ``workdir``), and
    the command for one report of every result."""
    found = {
        "Summary of each backbone": sorted(Path(workdir).glob("results/*/evaluation/summary.html")),
        "Audit to review (its corrections go to config 'corrections')": sorted(
            Path(workdir).glob("results/*/audit/review.html")
        ),
    }
    lines = ["The run is complete."]
    for title, pages in found.items():
        if pages:
            lines.append(f"{title}:")
            lines += [f"  {page.relative_to(workdir)}" for page in pages]
    lines.append("One report of every result: the same snakemake command with --report report.html")
    return "\n".join(lines)
